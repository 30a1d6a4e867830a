"""Cancellation reaches running code; pull-mode dequeue hands each task out once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from jobs import TaskCancelled, enqueue_many, errors, execution, operations, waiting
from models import TaskState, utcnow
from models.db import transaction
from tests.support import ledger, tasks
from tests.support.services import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def test_cancel_reaches_running_code_fast_and_it_never_runs_again(
    cluster: Cluster, counter
) -> None:
    handle = tasks.sleep.apply_async((30.0,))
    ledger.wait_state(handle.id, TaskState.RUNNING, timeout=10)
    time.sleep(0.2)

    asked = time.time()
    operations.cancel_task(tasks.app, handle.uuid, reason="user pressed cancel")
    seen = float(wait_for(lambda: counter.get(f"cancel-seen:{handle.id}"), 5, "handler saw it"))
    assert seen - asked < 0.5, f"handler saw the cancel after {seen - asked:.3f}s"

    with pytest.raises(TaskCancelled):
        handle.get(timeout=5)
    time.sleep(1.5)  # past a lease and several sweeps: nothing revives it
    row = ledger.task(handle.id)
    assert row.state is TaskState.CANCELLED and row.attempts == 1
    assert int(counter.get(f"runs:{handle.id}")) == 1
    # The code stopped on its own: the attempt gave its slot back ("task_stopped").
    assert ledger.event_types(handle.id)[-2:] == ["task_cancelled", "task_stopped"]
    assert row.lease_expires_at is None


def test_cancel_of_a_queued_task_means_it_never_starts(cluster: Cluster, counter) -> None:
    handle = tasks.add.apply_async((1, 2), countdown=1)
    operations.cancel_task(tasks.app, handle.uuid)
    time.sleep(2.0)
    assert ledger.task(handle.id).state is TaskState.CANCELLED
    assert counter.get(f"runs:{handle.id}") is None


def test_cancel_of_a_queued_task_wakes_its_waiter_at_once_and_only_once(
    cluster: Cluster, counter
) -> None:
    # One statement moves the row, writes the event and notifies waiters (jobs/cancel.py).
    handle = tasks.add.apply_async((1, 2), countdown=30)
    woken: list[float] = []

    def wait() -> None:
        row = waiting.wait_for_final(handle.uuid, timeout=20)
        assert row.state is TaskState.CANCELLED
        woken.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # the waiter is registered and asleep
    asked = time.monotonic()
    row = operations.cancel_task(tasks.app, handle.uuid, reason="not needed")
    waiter.join(10)
    assert row.state is TaskState.CANCELLED and row.finished_at is not None
    # woken by the NOTIFY, not by the fallback poll (seconds)
    assert woken and woken[0] - asked < 0.5, woken
    assert ledger.event_types(handle.id) == ["task_created", "task_cancelled"]
    assert ledger.events(handle.id)[-1].payload == {"reason": "not needed"}
    with pytest.raises(errors.InvalidTransition):
        operations.cancel_task(tasks.app, handle.uuid)
    with pytest.raises(errors.NotFound):
        operations.cancel_task(tasks.app, uuid.uuid4())
    assert ledger.event_types(handle.id) == ["task_created", "task_cancelled"]


def test_concurrent_dequeue_hands_out_each_task_once() -> None:
    # A queue no worker consumes: only the pull-mode callers below take these.
    handles = enqueue_many(
        tasks.app, [("t.add", (i, i), {}, {"queue": "pull-only"}) for i in range(60)]
    )
    taken: list[str] = []
    lock = threading.Lock()

    def puller(n: int) -> None:
        while True:
            with transaction() as conn:
                attempt = execution.dequeue(conn, worker_id=f"puller-{n}", lease_s=30, now=utcnow())
            if attempt is None:
                return
            with lock:
                taken.append(str(attempt.id))

    threads = [threading.Thread(target=puller, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(taken) == sorted(h.id for h in handles)


def test_dequeue_takes_the_most_urgent_for_an_agent() -> None:
    calls = [
        ("t.add", (p, p), {}, {"queue": "pull-only", "session_id": "agent", "priority": p})
        for p in (2, 5, 1)
    ]
    enqueue_many(tasks.app, [*calls, ("t.add", (9, 9), {}, {"queue": "pull-only", "priority": 5})])
    with transaction() as conn:
        first = execution.dequeue(conn, worker_id="p", lease_s=30, now=utcnow(), session_id="agent")
    assert first is not None and first.args == [5, 5] and first.session_id == "agent"
