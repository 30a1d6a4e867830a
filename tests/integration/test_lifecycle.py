"""The ordinary life of durable tasks, run by real worker processes."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from jobs import PermanentError
from models import Outcome, TaskState
from tests.support import ledger, tasks
from tests.support.services import Cluster

pytestmark = pytest.mark.usefixtures("clean")


def test_happy_path_row_event_and_celery_id_agree(cluster: Cluster) -> None:
    handle = tasks.add.delay(2, 3)

    assert handle.get(timeout=15) == 5
    row = ledger.task(handle.id)
    assert row.state is TaskState.COMPLETED
    assert row.result == 5 and row.attempts == 1 and row.retries == 0
    assert row.last_outcome == Outcome.OK
    assert ledger.event_types(handle.id) == ["task_created", "task_started", "task_completed"]
    # The Celery task id is the row id: the worker logged receiving exactly this id.
    assert f"t.add[{handle.id}] received" in cluster.workers[0].output()


def test_retry_timing_follows_the_backoff_within_a_second(cluster: Cluster) -> None:
    handle = tasks.flaky.apply_async((2,), max_retries=3)  # backoff_base=1.0: waits 1 s, then 2 s

    assert handle.get(timeout=30) == 3
    evs = ledger.events(handle.id)
    scheduled = [e for e in evs if e.event_type == "task_scheduled_for_retry"]
    starts = [e for e in evs if e.event_type == "task_started"]
    assert [e.payload["delay_s"] for e in scheduled] == [1.0, 2.0]  # base * 2**retries
    assert [e.payload["attempt"] for e in starts] == [1, 2, 3]
    for retry, start in zip(scheduled, starts[1:], strict=True):
        due = datetime.fromisoformat(retry.payload["backoff_until"])
        late = (start.created_at - due).total_seconds()
        assert 0 <= late < 1.0, f"retry started {late:.3f}s after its backoff_until"
    assert ledger.task(handle.id).retries == 2


def test_permanent_error_fails_at_once(cluster: Cluster, counter) -> None:
    handle = tasks.permanent.apply_async(max_retries=5)

    # Celery's AsyncResult.get re-raises the task's own exception
    with pytest.raises(PermanentError, match="retrying cannot help"):
        handle.get(timeout=15)
    row = ledger.task(handle.id)
    assert row.state is TaskState.FAILED and row.attempts == 1 and row.retries == 0
    assert row.last_outcome == Outcome.PERMANENT
    types = ledger.event_types(handle.id)
    assert "task_scheduled_for_retry" not in types and "task_exhausted_retries" not in types
    time.sleep(1.0)  # the retry sweep runs every 0.25 s: give it the chance to misbehave
    assert int(counter.get(f"runs:{handle.id}")) == 1


def test_retries_exhausted_fail_the_task(cluster: Cluster, counter) -> None:
    handle = tasks.always_fail.apply_async(max_retries=2)

    with pytest.raises(RuntimeError, match="always fails"):
        handle.get(timeout=20)
    row = ledger.task(handle.id)
    assert (row.state, row.attempts, row.retries) == (TaskState.FAILED, 3, 2)
    types = ledger.event_types(handle.id)
    assert types.count("task_failed") == 3
    assert types.count("task_scheduled_for_retry") == 2
    assert types[-1] == "task_exhausted_retries"
    assert int(counter.get(f"runs:{handle.id}")) == 3


def test_countdown_is_kept_in_postgres_until_due(cluster: Cluster) -> None:
    handle = tasks.add.apply_async((1, 1), countdown=2)
    row = ledger.task(handle.id)
    assert row.state is TaskState.QUEUED and row.dispatched_at is None

    time.sleep(1.0)
    assert ledger.task(handle.id).state is TaskState.QUEUED
    assert handle.get(timeout=10) == 2
    started = ledger.task(handle.id).started_at
    late = (started - row.scheduled_for).total_seconds()
    assert 0 <= late < 1.0


def test_soft_timeout_is_a_failed_attempt(cluster: Cluster) -> None:
    handle = tasks.sleep.apply_async((5,), timeout=0.5, max_retries=0)

    with pytest.raises(SoftTimeLimitExceeded, match="time limit"):
        handle.get(timeout=15)
    row = ledger.task(handle.id)
    assert row.last_outcome == Outcome.TIMEOUT and row.attempts == 1


def test_priority_decides_dispatch_order_within_a_session(cluster: Cluster, counter) -> None:
    from jobs import enqueue_many

    blocker = tasks.sleep.apply_async((1.0, "blocker"), session_id="prio")
    ledger.wait_state(blocker.id, TaskState.RUNNING, timeout=10)
    # Window of 3: the blocker plus two slots. Fill them so the rest must wait in Postgres.
    enqueue_many(tasks.app, [("t.sleep", (1.0, "filler"), {}, {"session_id": "prio"})] * 2)
    calls = [
        ("t.sleep", (0.0, f"p{p}"), {}, {"session_id": "prio", "priority": p})
        for p in (1, 3, 5, 2, 4)
    ]
    handles = enqueue_many(tasks.app, calls)
    for h in handles:
        ledger.wait_state(h.id, TaskState.COMPLETED, timeout=30)
    order = sorted(handles, key=lambda h: ledger.task(h.id).started_at)
    assert [ledger.task(h.id).priority for h in order] == [5, 4, 3, 2, 1]


def test_verifier_sets_verification_status_and_a_rejection_is_retried(cluster: Cluster) -> None:
    handle = tasks.answer.apply_async(metadata={"expected_output": 42})

    assert handle.get(timeout=15) == 42
    row = ledger.task(handle.id)
    assert row.verification_status == "verified" and row.attempts == 2
    failed = next(e for e in ledger.events(handle.id) if e.event_type == "task_failed")
    assert failed.payload["outcome"] == Outcome.VERIFICATION


def test_hard_time_limit_kills_code_that_ignores_the_soft_one(cluster: Cluster, counter) -> None:
    handle = tasks.stubborn.apply_async((30,), timeout=0.5, max_retries=0)

    with pytest.raises(TimeLimitExceeded, match="time limit"):
        handle.get(timeout=30)
    row = ledger.task(handle.id)
    assert row.last_outcome == Outcome.TIMEOUT and row.attempts == 1
    assert counter.get(f"soft-ignored:{handle.id}") is not None  # the soft limit did fire
