"""What ``taskledger up`` runs and keeps running: named commands, restarted when they crash.

A role is a function from the settings to a ``Service`` (its name, its command
line and the log line that says it is serving). ``SERVICES`` lists them in
start order; a new role (the HTTP API, say) is one more function appended to it.
Every command is a plain one (``celery -A workers.app worker`` …): what ``up``
adds is supervision, not configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cli.logpump import LogPump, RotatingLog
from models.settings import Settings

RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_AFTER_S = 30.0  # a service that ran this long starts its backoff from the beginning again


@dataclass(frozen=True)
class UpOptions:
    concurrency: int
    autoscale: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    ready: str | None = None  # a log line that says the service is serving
    # Seconds between SIGTERM and SIGKILL on stop; None: ``up --stop-timeout`` (for services
    # that finish running work, like the worker).
    stop_grace_s: float | None = None


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app", *args]


def worker(settings: Settings, options: UpOptions) -> Service:
    size = (
        ["--autoscale", options.autoscale]
        if options.autoscale
        else ["-c", str(options.concurrency)]
    )
    return Service(
        "worker",
        celery_command(
            "worker",
            *size,
            "-n",
            f"taskledger{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            settings.log_level,
        ),
        ready="ready.",
    )


def beat(settings: Settings, options: UpOptions) -> Service:
    schedule = settings.home / "beat-schedule"
    # Beat holds nothing worth waiting for (Postgres decides what is due): a short grace.
    return Service(
        "beat",
        celery_command("beat", "-s", str(schedule), "-l", settings.log_level),
        stop_grace_s=2.0,
    )


def sidecar(settings: Settings, options: UpOptions) -> Service:
    # Side tasks (beat/side.py, README "Scheduled work"); idles in serverless mode.
    argv = [sys.executable, "-m", "cli.main", "sidecar", "--idle-if-serverless"]
    return Service("sidecar", argv, ready="sidecar running", stop_grace_s=15.0)


def api(settings: Settings, options: UpOptions) -> Service:
    from cli.api import api_service  # the HTTP API and the monitor (cli/api.py)

    return api_service(settings, options)


SERVICES: list[Callable[[Settings, UpOptions], Service]] = [worker, beat, sidecar, api]

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: if ``up`` dies, even by SIGKILL, the kernel stops us too."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Supervised:
    """One service's process, its log, and when to start it again after a crash."""

    service: Service
    logs: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    pump: LogPump | None = None
    log: RotatingLog | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)  # exit codes of crashed runs

    def start(self) -> None:
        if self.log is None:
            self.log = RotatingLog(self.logs / f"{self.service.name}.log")
        self.proc = subprocess.Popen(
            self.service.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # own group: Ctrl-C reaches ``up`` only; we stop it whole
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        marker = self.service.ready.encode() if self.service.ready else None
        self.pump = LogPump(self.proc.stdout, self.log, marker)
        self.pump.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, now: float) -> str | None:
        """Notice a crash or start a due restart; returns what happened, to tell the user."""
        if self.proc is None:
            return None
        if self.restart_at is not None:
            if now < self.restart_at:
                return None
            self.start()
            return f"{self.service.name} restarted (pid {self.pid})"
        code = self.proc.poll()
        if code is None:
            return None
        self._kill_group()  # a SIGKILLed prefork worker leaves its pool children behind
        if now - self.started_at > STABLE_AFTER_S:
            self.crashes = 0
        delay = RESTART_BACKOFF_S[min(self.crashes, len(RESTART_BACKOFF_S) - 1)]
        self.crashes += 1
        self.history.append(code)
        self.restart_at = now + delay
        return (
            f"{self.service.name} exited with code {code}; restarting in {delay:.0f} s "
            f"(crash {self.crashes}; see {self.logs / self.service.name}.log)"
        )

    def wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.pump is not None and self.pump.ready.wait(0.1):
                return True
            if not self.alive():
                return False
        return False

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """Wait for the process until ``deadline``, then kill its whole group."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(max(deadline - time.monotonic(), 0))
            self._kill_group()
            self.proc.wait()
        if self.pump is not None:
            self.pump.join(2)
        if self.log is not None:
            self.log.close()

    def _kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class ServiceFailed(RuntimeError):
    """A service exited or never said it was ready; ``tail`` is the end of its log."""

    def __init__(self, message: str, tail: list[str]) -> None:
        super().__init__(message)
        self.tail = tail


def log_tail(path: Path, lines: int = 8) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []


class Supervisor:
    """Starts every service, restarts crashed ones with backoff, stops them all together."""

    def __init__(self, services: list[Service], *, logs: Path, env: dict[str, str]) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.members = [Supervised(s, logs, env) for s in services]

    def start(self, timeout: float = 60) -> None:
        for member in self.members:
            member.start()
        deadline = time.monotonic() + timeout
        for member in self.members:
            if not member.wait_ready(deadline):
                name = member.service.name
                how = "exited" if not member.alive() else f"did not start within {timeout:.0f} s"
                log = self.logs / f"{name}.log"
                raise ServiceFailed(f"{name} {how}; see {log}", log_tail(log))

    def check(self) -> list[str]:
        now = time.monotonic()
        return [note for m in self.members if (note := m.check(now))]

    def by_name(self, name: str) -> Supervised:
        return next(m for m in self.members if m.service.name == name)

    def stop(self, grace: float) -> None:
        """SIGTERM everyone at once (a worker finishes its running tasks), SIGKILL at ``grace``
        (or the service's own shorter grace)."""
        for member in self.members:
            member.terminate()
        began = time.monotonic()
        for member in self.members:
            own = member.service.stop_grace_s
            member.finish(began + (grace if own is None else min(own, grace)))
