"""Faults are tested, not assumed: duplicates, SIGKILL, Redis flush/restart, Postgres restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import redis
from sqlalchemy.exc import OperationalError

from jobs import enqueue_many
from models import Outcome, Task, TaskEvent, TaskState
from tests.support import ledger, services, tasks
from tests.support.services import Cluster, wait_for

pytestmark = [pytest.mark.usefixtures("clean"), pytest.mark.faults]


def tolerant(fn):
    """A predicate that reads Postgres while Postgres may be restarting."""

    def check():
        try:
            return fn()
        except OperationalError:
            return False

    return check


def all_completed_once(n: int) -> bool:
    per_task = ledger.completed_events_per_task()
    return len(per_task) == n and set(per_task.values()) == {1}


def test_duplicate_messages_run_nothing_twice(cluster: Cluster, counter) -> None:
    handle = tasks.sleep.apply_async((0.5,))
    # The broker may deliver a message more than once; publish two more copies of it.
    for _ in range(2):
        tasks.app.send_task("t.sleep", args=[0.5], task_id=handle.id, queue="taskledger")

    handle.get(timeout=15)
    time.sleep(1.0)  # let the copies arrive and be dropped
    assert cluster.workers[0].output().count(f"t.sleep[{handle.id}] received") == 3
    assert int(counter.get(f"runs:{handle.id}")) == 1
    assert ledger.event_types(handle.id).count("task_completed") == 1
    assert ledger.task(handle.id).attempts == 1


def test_sigkill_of_the_child_mid_task_retries_and_completes_once(
    cluster: Cluster, counter
) -> None:
    handle = tasks.sleep.apply_async((2.0, "victim"), max_retries=3)
    row = ledger.wait_state(handle.id, TaskState.RUNNING, timeout=10)
    time.sleep(0.3)
    os.kill(int(row.worker_id.rsplit(":", 1)[1]), signal.SIGKILL)

    result = handle.get(timeout=40)
    assert result["label"] == "victim"
    row = ledger.task(handle.id)
    assert (row.state, row.attempts, row.retries) == (TaskState.COMPLETED, 2, 1)
    assert int(counter.get(f"runs:{handle.id}")) == 2  # killed once, then ran to the end
    failed = [e for e in ledger.events(handle.id) if e.event_type == "task_failed"]
    assert [e.payload["outcome"] for e in failed] == [Outcome.WORKER_LOST]
    assert ledger.event_types(handle.id).count("task_completed") == 1


def test_sigkill_of_the_whole_worker_then_a_new_worker_completes_it(
    cluster: Cluster, counter
) -> None:
    handle = tasks.sleep.apply_async((2.0, "orphan"), max_retries=3)
    ledger.wait_state(handle.id, TaskState.RUNNING, timeout=10)
    victim = cluster.workers.pop(0)
    victim.kill()  # the worker and its children, no goodbye
    cluster.start_worker()

    assert handle.get(timeout=40)["label"] == "orphan"
    row = ledger.task(handle.id)
    assert row.attempts == 2
    assert ledger.event_types(handle.id).count("task_completed") == 1
    assert int(counter.get(f"runs:{handle.id}")) == 2


def test_redis_flushall_with_500_queued_loses_nothing(cluster: Cluster) -> None:
    cluster.stop_workers()  # nothing consumes: 500 messages wait in Redis
    enqueue_many(tasks.app, [("t.add", (i, i), {}, {}) for i in range(500)])
    broker = redis.Redis.from_url(services.BROKER_URL)
    assert broker.llen("taskledger:4") == 500

    broker.flushall()
    assert broker.llen("taskledger:4") == 0
    cluster.start_worker()

    wait_for(lambda: all_completed_once(500), 90, "all 500 tasks completed exactly once")
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0


def test_redis_restart_mid_run_loses_nothing(cluster: Cluster) -> None:
    enqueue_many(tasks.app, [("t.sleep", (0.05,), {}, {}) for _ in range(100)])
    wait_for(lambda: ledger.count(Task.state == TaskState.COMPLETED) >= 10, 30, "10 completed")

    restart_redis()

    wait_for(lambda: all_completed_once(100), 120, "all 100 tasks completed exactly once")
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0


def test_postgres_restart_mid_run_nothing_lost_or_stuck(cluster: Cluster) -> None:
    enqueue_many(tasks.app, [("t.sleep", (0.1,), {}, {}) for _ in range(60)])
    wait_for(lambda: ledger.count(Task.state == TaskState.COMPLETED) >= 10, 30, "10 completed")

    restart_postgres()

    wait_for(tolerant(lambda: all_completed_once(60)), 120, "all 60 completed exactly once")
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=60,
    )


def restart_redis() -> None:
    """Stop Redis without saving (it keeps nothing on disk here) and start it again."""
    client = redis.Redis(host="127.0.0.1", port=6379)
    with contextlib.suppress(redis.ConnectionError):  # it drops the connection as it goes
        client.shutdown(nosave=True)
    time.sleep(0.5)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
        timeout=30,
    )
    wait_for(lambda: _pings(client), 20, "redis to come back")


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_waiting_backlog_is_not_republished_but_a_lost_message_is(cluster: Cluster) -> None:
    cluster.stop_workers()  # the backlog waits in Redis, longer than the redispatch age (5 s)
    handles = enqueue_many(tasks.app, [("t.add", (i, 1), {}, {}) for i in range(300)])
    broker = redis.Redis.from_url(services.BROKER_URL)
    time.sleep(7)
    assert broker.llen("taskledger:4") == 300  # no duplicates piled up
    assert ledger.count_events(TaskEvent.event_type == "task_redispatched") == 0

    broker.rpop("taskledger:4", 40)  # 40 messages vanish (kombu consumes from the right)
    wait_for(lambda: broker.llen("taskledger:4") == 300, 10, "the 40 to be republished")
    assert ledger.count_events(TaskEvent.event_type == "task_redispatched") == 40

    cluster.start_worker()
    wait_for(lambda: all_completed_once(300), 60, "all 300 completed exactly once")
    assert {ledger.task(h.id).state for h in handles} == {TaskState.COMPLETED}
