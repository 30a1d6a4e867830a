"""Real services for the tests: throwaway Postgres and Redis, worker and beat processes.

Importing this module starts the suite's own servers (``tests/support/stack.py``);
``tests/conftest.py`` imports it first and stops them when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from models.broker import redis_client
from tests.support.stack import TEST_DB, TestServers

ROOT = Path(__file__).resolve().parents[2]
SERVERS = TestServers()
SERVERS.start()
PG_ADMIN_URL = SERVERS.admin_url
BROKER_URL = SERVERS.broker_url(0)  # kombu's spelling, for Celery
BROKER_REDIS_URL = SERVERS.redis_url(0)  # the same database, for redis-py
COUNTER_URL = SERVERS.redis_url(1)

# What every process of a test run sees: short leases and fast sweeps, so faults heal in seconds.
TEST_ENV = {
    "TASKLEDGER_DATABASE_URL": SERVERS.database_url(TEST_DB),
    "TASKLEDGER_BROKER_URL": BROKER_URL,
    # "pull-only": rows agents take with jobs.execution.dequeue; no worker consumes it
    "TASKLEDGER_QUEUES": "taskledger,pull-only",
    "TASKLEDGER_IMPORTS": "tests.support.tasks,tests.support.fault_tasks,tests.support.list_tasks,"
    "tests.support.safety_tasks,tests.support.mcp_tasks,tests.support.flow_tasks",
    "TASKLEDGER_LEASE_SECONDS": "2",
    "TASKLEDGER_HEARTBEAT_SECONDS": "0.5",
    "TASKLEDGER_DISPATCH_INTERVAL_SECONDS": "0.5",
    "TASKLEDGER_RETRY_INTERVAL_SECONDS": "0.5",
    "TASKLEDGER_REAPER_INTERVAL_SECONDS": "1.0",
    "TASKLEDGER_REDISPATCH_AFTER_SECONDS": "5",
    "TASKLEDGER_TIMEOUT_GRACE_SECONDS": "2",
    "TASKLEDGER_CANCEL_GRACE_SECONDS": "1.5",
    "TASKLEDGER_HOME": str(SERVERS.folder / "home"),
    "TEST_COUNTER_URL": COUNTER_URL,
}


def recreate_database() -> None:
    SERVERS.recreate_database(TEST_DB)


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

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str],
        ready: str | None,
        cwd: Path = ROOT,
    ):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", *args],
            cwd=cwd,
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


SWEEPS_QUEUE = "taskledger.sweeps"


class Cluster:
    """Workers and a beat as Celery's docs start them: ``celery -A workers.app worker``
    and ``celery -A workers.app beat``, no queue flags; the sweeps ride the default queue.

    ``dedicated_sweeps=True`` is the production option instead: the sweeps go to
    their own queue (TASKLEDGER_SWEEPS_QUEUE) and a solo worker of their own.
    Only a node name (so several workers can coexist) and a log level are added.
    """

    def __init__(self, tmp: Path, env: dict[str, str], *, dedicated_sweeps: bool = False):
        self.tmp = tmp
        self.dedicated_sweeps = dedicated_sweeps
        self.env = dict(env, TASKLEDGER_SWEEPS_QUEUE=SWEEPS_QUEUE if dedicated_sweeps else "")
        self.workers: list[Proc] = []
        self.sweeper: Proc | None = None
        self.beat: Proc | None = None
        self._sweeper = f"sweeps{os.getpid()}@localhost"

    def start_worker(self, *extra: str, concurrency: int | None = None) -> Proc:
        name = f"w{uuid.uuid4().hex[:6]}"
        args = ["worker", "-n", f"{name}@localhost", "-l", "INFO", *extra]
        if concurrency is not None:
            args += ["-c", str(concurrency)]
        proc = Proc(args, self.tmp / f"{name}.log", self.env, ready="ready.", cwd=self.tmp)
        first = not self.workers
        self.workers.append(proc)
        if first and self.beat is not None and not self.dedicated_sweeps:
            # This worker runs the sweeps: wait for its first dispatch sweep (which marks a
            # fresh broker), so a test's first task is not caught in a start-up republish.
            wait_for(
                lambda: re.search(r"sweep\.dispatch\[\S+\] succeeded", proc.output()),
                60,
                "the first dispatch sweep",
            )
        return proc

    def start_sweeps(self) -> None:
        """Start what drives the sweeps: beat (and, as an option, a sweeps worker)."""
        if self.dedicated_sweeps:
            self.sweeper = Proc(
                ["worker", "-P", "solo", "-Q", SWEEPS_QUEUE, "-l", "INFO", "-n", self._sweeper],
                self.tmp / "sweeps.log",
                self.env,
                ready="ready.",
                cwd=self.tmp,
            )
        self.beat = self.start_beat()

    def start_beat(self, name: str = "beat") -> Proc:
        return Proc(
            ["beat", "-s", str(self.tmp / f"{name}-schedule"), "-l", "INFO"],
            self.tmp / f"{name}.log",
            self.env,
            ready="beat: Starting",
            cwd=self.tmp,
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


def broker_redis() -> redis.Redis:
    return redis_client(BROKER_REDIS_URL)


def flush_redis() -> None:
    """Empty the suite's own Redis (never the machine's)."""
    for url in (BROKER_REDIS_URL, COUNTER_URL):
        redis_client(url).flushdb()


def queue_size(queue: str = "taskledger") -> int:
    """Task messages waiting in a queue (every priority level). Sweep messages are left
    out: beat keeps sending them to the default queue while no worker consumes it."""
    return len(_task_messages(queue))


def remove_random_messages(n: int, queue: str = "taskledger") -> set[uuid.UUID]:
    """Take ``n`` randomly chosen task messages out of a queue; return their task ids."""
    import random

    from workers.app import app

    removed = set()
    with app.connection_for_write() as conn, conn.default_channel.conn_or_acquire() as client:
        for name, raw, task_id in random.sample(_task_messages(queue), n):
            client.lrem(name, 1, raw)
            removed.add(task_id)
    return removed


def _task_messages(queue: str) -> list[tuple[str, bytes, uuid.UUID]]:
    """(list name, raw message, task id) of each task message in ``queue``, not sweeps."""
    import json

    from workers.app import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        lists = {channel._q_for_pri(queue, pri) for pri in channel.priority_steps}
        with channel.conn_or_acquire() as client:
            found = []
            for name in lists:
                for raw in client.lrange(name, 0, -1):
                    headers = json.loads(raw)["headers"]
                    if not str(headers["task"]).startswith("taskledger.sweep."):
                        found.append((name, raw, uuid.UUID(headers["id"])))
    return found
