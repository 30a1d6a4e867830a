"""Starting and stopping a worker and beat as child processes (``up`` and ``demo``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from models.settings import Settings

PIDFILE = "up.pid"


class Services:
    """A worker (tasks and sweeps) and a beat, logging into TASKLEDGER_HOME/logs."""

    def __init__(self, settings: Settings, *, concurrency: int, autoscale: str = "") -> None:
        self.settings = settings
        self.logs = settings.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        queues = f"{settings.default_queue},{settings.sweeps_queue}"
        worker = ["worker", "-P", "prefork", "-Q", queues, "-n", f"taskledger{os.getpid()}@%h"]
        worker += ["--autoscale", autoscale] if autoscale else ["-c", str(concurrency)]
        worker += ["--without-gossip", "--without-mingle", "-l", settings.log_level]
        self.commands = {
            "worker": worker,
            "beat": ["beat", "-s", str(settings.home / "beat-schedule"), "-l", settings.log_level],
        }

    def start(self) -> None:
        env = dict(os.environ, TASKLEDGER_HOME=str(self.settings.home))
        for name, args in self.commands.items():
            log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.app", *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
        (self.settings.home / PIDFILE).write_text(str(os.getpid()))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        log = self.logs / "worker.log"
        start = log.stat().st_size if log.exists() else 0
        while time.monotonic() < deadline:
            self.check_alive()
            with open(log, "rb") as f:
                f.seek(start)
                if b"ready." in f.read():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the worker did not start within {timeout}s; see {log}")

    def check_alive(self) -> None:
        for name, proc in zip(self.commands, self.procs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.logs}/{name}.log"
                )

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            (self.settings.home / PIDFILE).unlink()


@contextlib.contextmanager
def running(settings: Settings, *, concurrency: int, autoscale: str = "") -> Iterator[Services]:
    services = Services(settings, concurrency=concurrency, autoscale=autoscale)
    services.start()
    try:
        services.wait_ready()
        yield services
    finally:
        services.stop()


def already_up(home: Path) -> bool:
    """Is a ``taskledger up`` serving this home already?"""
    try:
        pid = int((home / PIDFILE).read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True
