"""``taskledger up`` as a user runs it, in a subprocess, on a private home folder.

Each ``UpProcess`` gets a short temporary home (unix socket paths must stay
under ~100 characters) and an environment without the suite's URLs, so it
starts its own embedded PostgreSQL and Redis, unless the test passes URLs.
``close()`` leaves nothing behind, whatever happened: it SIGKILLs every
process that still names the home in its command line or environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.services import ROOT, wait_for

READY_LINE = "Run the demo from another terminal:"
URL_VARIABLES = ("TASKLEDGER_DATABASE_URL", "TASKLEDGER_BROKER_URL", "TASKLEDGER_HOME")


def user_env(home: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: the suite's URLs removed, this home set."""
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)  # the task modules of tests.support
    if home is not None:
        env["TASKLEDGER_HOME"] = str(home)
    env.update(extra)
    return env


def short_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="tlu-", dir="/tmp")) / "home"


def processes_using(home: Path) -> list[int]:
    """Pids whose command line or environment mentions ``home`` (not this process)."""
    needle = str(home).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()).strip()


class UpProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = short_home()
        self.cwd = Path(tempfile.mkdtemp(prefix="tlu-cwd-"))
        self.env = env if env is not None else user_env(self.home)
        self.env["TASKLEDGER_HOME"] = str(self.home)
        self.log_path = self.home.parent / "up.out"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> float:
        wait_for(
            lambda: READY_LINE in self.output() or self.proc.poll() is not None,
            timeout,
            "taskledger up to be ready",
            interval=0.1,
        )
        assert self.proc.poll() is None, f"up exited:\n{self.output()}"
        return time.monotonic() - self.started

    def demo_command(self) -> str:
        lines = self.output().splitlines()
        return lines[lines.index(READY_LINE) + 1].strip()

    def service_pid(self, name: str) -> int:
        for pid in children(self.proc.pid):
            argv = cmdline(pid).split()
            if "celery" in argv and name in argv:
                return pid
        raise AssertionError(f"no {name} among up's children:\n{self.output()}")

    def interrupt(self, timeout: float = 60) -> float:
        """Ctrl-C; returns the seconds until ``up`` exited."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        return time.monotonic() - began

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in processes_using(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()
        shutil.rmtree(self.home.parent, ignore_errors=True)
        shutil.rmtree(self.cwd, ignore_errors=True)
