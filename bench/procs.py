"""Worker subprocesses and what /proc says about them (CPU, RSS, pool size).

Every process is started in its own process group and registered, so that
``stop_all`` (run on exit, Ctrl-C or failure) leaves nothing behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
_started: list[subprocess.Popen[bytes]] = []


class Worker:
    """``celery -A APP worker`` (or beat) as a user starts it, with a log file."""

    def __init__(self, app: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        cmd = [sys.executable, "-m", "celery", "-A", app, *args]
        self.popen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _started.append(self.popen)
        # bench/run.py kills these groups if this process itself dies uncleanly.
        if os.environ.get("BENCH_PGIDS"):
            with open(os.environ["BENCH_PGIDS"], "a") as f:
                f.write(f"{self.popen.pid}\n")

    @classmethod
    def worker(
        cls,
        app: str,
        env: dict[str, str],
        log: Path,
        *,
        concurrency: int = 2,
        queues: str = "",
        extra: tuple[str, ...] = (),
    ) -> Worker:
        args = ["worker", "-P", "prefork", "-l", "WARNING", "--without-gossip"]
        args += [
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"b{os.getpid()}-{time.time_ns()}@%h",
        ]
        args += (
            ["-c", str(concurrency)] if not any(a.startswith("--autoscale") for a in extra) else []
        )
        args += ["-Q", queues] if queues else []
        return cls(app, [*args, *extra], env, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM to the main process, so pool children exit cleanly and
        report their counters), then SIGKILL of the whole group."""
        if self.popen.poll() is None:
            with suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.kill(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._log.close()
        with suppress(ValueError):
            _started.remove(self.popen)


def stop_all() -> None:
    for popen in list(_started):
        with suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with suppress(Exception):
            popen.wait(5)
    _started.clear()


atexit.register(stop_all)


def kill_recorded_groups(path: Path) -> None:
    """SIGKILL every worker group a scenario process recorded (its own cleanup may not
    have run). A group is ours if its leader is gone or is still a celery process."""
    if not path.exists():
        return
    for line in path.read_text().split():
        pgid = int(line)
        try:
            cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
        except OSError:
            cmdline = b"celery"  # leader gone: only its own group can have this id
        if b"celery" in cmdline:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    path.unlink()


def exit_on_sigterm() -> None:
    """SIGTERM unwinds through atexit (stop_all) instead of ending the process on the spot."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.02) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate() if callable(predicate) else predicate
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
