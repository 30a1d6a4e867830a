"""Is a server process still there? Zombies count as gone.

Daemonized servers are re-parented to PID 1, and a container's PID 1 may reap
them late (here: over a second after Redis exited), while ``kill(pid, 0)``
still succeeds on the zombie.
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (the wheel's postgres user)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return not Path("/proc/self").exists()  # no /proc (not Linux): trust kill()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
