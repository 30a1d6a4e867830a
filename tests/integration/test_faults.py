"""Faults are tested, not assumed: duplicates, SIGKILL, Redis flush/restart, Postgres restart."""

from __future__ import annotations

import os
import signal
import time

import pytest

from jobs import enqueue_many
from models import Outcome, Task, TaskEvent, TaskState
from tests.support import ledger, services, tasks
from tests.support.services import Cluster, wait_for

pytestmark = [pytest.mark.usefixtures("clean"), pytest.mark.faults]


def all_completed_once(n: int) -> bool:
    per_task = ledger.completed_events_per_task()
    return len(per_task) == n and set(per_task.values()) == {1}


def test_duplicate_messages_run_nothing_twice(cluster: Cluster, counter) -> None:
    handle = tasks.sleep.apply_async((0.5,))
    # The broker may deliver a message more than once; publish two more copies of it.
    for _ in range(2):
        tasks.app.send_task(  # as the ledger's own publish would (a raw duplicate message)
            "t.sleep", args=[0.5], task_id=handle.id, queue="taskledger", taskledger_internal=True
        )

    handle.get(timeout=15)
    received = f"t.sleep[{handle.id}] received"
    wait_for(  # all three copies arrive (and the two late ones are dropped)
        lambda: cluster.workers[0].output().count(received) == 3, 10, "three deliveries"
    )
    time.sleep(0.5)  # a copy that was wrongly run would show in the counter by now
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
    broker = services.broker_redis()
    assert services.queue_size() == 500

    broker.flushall()
    assert services.queue_size() == 0
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

    wait_for(ledger.tolerant(lambda: all_completed_once(60)), 120, "all 60 completed exactly once")
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0


def restart_postgres() -> None:
    """Crash-stop the suite's own Postgres and start it again (never the machine's)."""
    services.SERVERS.restart_postgres()


def restart_redis() -> None:
    """Stop the suite's own Redis (it keeps nothing on disk) and start it again."""
    services.SERVERS.restart_redis()


def test_a_waiting_backlog_is_not_republished_but_random_lost_messages_are(
    cluster: Cluster, tmp_path
) -> None:
    # given: nothing consumes tasks, the sweeps run on a dedicated sweeps worker
    # (the production option), and 300 messages wait longer than the redispatch age (5 s)
    cluster.stop_workers()
    assert cluster.beat is not None
    cluster.beat.stop()
    sweeps = Cluster(tmp_path, cluster.env, dedicated_sweeps=True)
    sweeps.start_sweeps()
    try:
        handles = enqueue_many(tasks.app, [("t.add", (i, 1), {}, {}) for i in range(300)])
        time.sleep(7)
        assert services.queue_size() == 300  # no duplicates piled up
        assert ledger.count_events(TaskEvent.event_type == "task_redispatched") == 0

        # when: 40 messages chosen at random vanish (not the oldest, not the next in line)
        removed = services.remove_random_messages(40)
        wait_for(lambda: services.queue_size() == 300, 15, "the 40 to be republished")
        time.sleep(1.5)  # a few more dispatch sweeps: still nothing extra

        # then: exactly the missing ones were republished, nothing else
        assert services.queue_size() == 300
        redispatched = {
            e.task_id
            for h in handles
            for e in ledger.events(h.id)
            if e.event_type == "task_redispatched"
        }
        assert redispatched == removed
    finally:
        sweeps.stop()
        cluster.beat = cluster.start_beat(name="beat-after-backlog")
    cluster.start_worker()
    wait_for(lambda: all_completed_once(300), 90, "all 300 completed exactly once")
    assert {ledger.task(h.id).state for h in handles} == {TaskState.COMPLETED}
