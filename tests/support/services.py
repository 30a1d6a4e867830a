"""Real services for the tests: a fresh Postgres database, Redis dbs, worker and beat processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from models import db

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB = os.environ.get("TEST_PG_DATABASE", "taskledger_test")
BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/9")
COUNTER_URL = os.environ.get("TEST_COUNTER_URL", "redis://127.0.0.1:6379/10")

# What every process of a test run sees: short leases and fast sweeps, so faults heal in seconds.
TEST_ENV = {
    "TASKLEDGER_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB,
    "TASKLEDGER_BROKER_URL": BROKER_URL,
    "TASKLEDGER_IMPORTS": "tests.support.tasks",
    "TASKLEDGER_LEASE_SECONDS": "2",
    "TASKLEDGER_HEARTBEAT_SECONDS": "0.5",
    "TASKLEDGER_DISPATCH_INTERVAL_SECONDS": "0.25",
    "TASKLEDGER_RETRY_INTERVAL_SECONDS": "0.25",
    "TASKLEDGER_REAPER_INTERVAL_SECONDS": "0.5",
    "TASKLEDGER_REDISPATCH_AFTER_SECONDS": "5",
    "TASKLEDGER_TIMEOUT_GRACE_SECONDS": "2",
    "TASKLEDGER_HOME": "/tmp/taskledger-test-home",
    "TEST_COUNTER_URL": COUNTER_URL,
}


def recreate_database() -> None:
    db.recreate_database(PG_ADMIN_URL, TEST_DB)


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A celery worker or beat subprocess with its own log file and process group."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str], ready: str | None):
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if ready:
            wait_for(lambda: ready in self.output() or self.popen.poll() is not None, 60, ready)
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.output()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and all its children, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.log.close()

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        self.log.close()


class Cluster:
    """One task worker (prefork), one sweeps worker and one beat, as in production."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp = tmp
        self.env = env
        self.workers: list[Proc] = []
        self.sweeper: Proc | None = None
        self.beat: Proc | None = None

    def start_worker(self, concurrency: int = 2, queues: str = "taskledger") -> Proc:
        name = f"w{uuid.uuid4().hex[:6]}@localhost"
        proc = Proc(
            [
                "worker",
                "-P",
                "prefork",
                "-c",
                str(concurrency),
                "-Q",
                queues,
                "-n",
                name,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            self.tmp / f"{name.split('@')[0]}.log",
            self.env,
            ready="ready.",
        )
        self.workers.append(proc)
        return proc

    def start_sweeps(self) -> None:
        self.sweeper = Proc(
            [
                "worker",
                "-P",
                "solo",
                "-Q",
                "taskledger.sweeps",
                "-n",
                f"sweeps{os.getpid()}@localhost",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            self.tmp / "sweeps.log",
            self.env,
            ready="ready.",
        )
        self.beat = Proc(
            ["beat", "-s", str(self.tmp / "beat-schedule"), "-l", "INFO"],
            self.tmp / "beat.log",
            self.env,
            ready="beat: Starting",
        )

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        for proc in (self.sweeper, self.beat):
            if proc is not None:
                proc.stop()


def flush_redis() -> None:
    for url in (BROKER_URL, COUNTER_URL):
        redis.Redis.from_url(url).flushdb()
