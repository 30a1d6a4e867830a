"""Fairness by windowed dispatch: one agent's backlog never stands in front of another's."""

from __future__ import annotations

import time

import pytest

from jobs import dispatch, enqueue_many, operations
from models import Task, TaskState
from models.db import transaction
from tests.support import ledger, services, tasks
from tests.support.services import Cluster

pytestmark = pytest.mark.usefixtures("clean")


def queued_messages() -> int:
    broker = services.broker_redis()
    return sum(broker.llen(key) for key in broker.keys("taskledger:[0-9]")) + broker.llen(
        "taskledger"
    )


def test_session_b_starts_while_session_a_has_2000_queued(cluster: Cluster) -> None:
    enqueue_many(tasks.app, [("t.sleep", (0.05,), {}, {"session_id": "A"})] * 2000)
    time.sleep(0.5)  # A's first three are running; the rest wait in Postgres
    with transaction() as conn:
        assert dispatch.in_flight(conn, "A") <= 3
    assert queued_messages() <= 3

    enqueued = time.monotonic()
    b = tasks.add.apply_async((20, 22), session_id="B")
    assert b.get(timeout=10) == 42
    waited = time.monotonic() - enqueued

    a_done = ledger.count(Task.session_id == "A", Task.state == TaskState.COMPLETED)
    assert a_done < 200, "B should not have waited for A's backlog"
    assert waited < 3.0
    with transaction() as conn:
        assert dispatch.in_flight(conn, "A") <= 3

    # Cancelling a backlog is one UPDATE; running ones get the signal.
    cancelled = operations.cancel_session(tasks.app, "A")
    assert cancelled >= 2000 - a_done - 3
    ledger_wait = time.monotonic() + 10
    while ledger.count(Task.session_id == "A", Task.state == TaskState.RUNNING):
        assert time.monotonic() < ledger_wait
        time.sleep(0.05)
    assert ledger.count(Task.session_id == "A", Task.state == TaskState.QUEUED) == 0


def test_a_session_window_can_be_widened(cluster: Cluster) -> None:
    from sqlalchemy import insert

    from models import AgentSession

    with transaction() as conn:
        conn.execute(insert(AgentSession).values(id="wide", concurrency=10))
    enqueue_many(tasks.app, [("t.sleep", (1.0,), {}, {"session_id": "wide"})] * 20)
    with transaction() as conn:
        assert dispatch.in_flight(conn, "wide") == 10
    operations.cancel_session(tasks.app, "wide")
