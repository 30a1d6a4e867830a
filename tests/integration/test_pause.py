"""Pause and resume a session or a queue; two users' sessions stay apart."""

from __future__ import annotations

import time

from jobs import bulk, sessions
from jobs.enqueue import enqueue
from models import TaskState
from models.db import transaction
from tests.support import ledger
from tests.support.services import Cluster, wait_for
from workers.app import app


def _started(counter) -> list[str]:
    return [x.decode() for x in counter.lrange("work:started", 0, -1)]


def test_paused_session_starts_nothing_new_and_resumes_in_priority_order(
    cluster: Cluster, clean: None, counter
) -> None:
    with transaction() as conn:
        sessions.set_session(conn, "sA", user_id="alice", concurrency=1)
    # given: one task running in the session
    first = enqueue(app, "s.work", [1.0], {"label": "first"}, session_id="sA")
    ledger.wait_state(first.id, TaskState.RUNNING)
    # when: paused, and more work arrives at every priority
    assert sessions.pause_session(app, "sA", by="ops") is True
    assert sessions.pause_session(app, "sA", by="ops") is False  # already paused
    for priority in (1, 3, 5, 2, 4):
        enqueue(
            app, "s.work", [0.05], {"label": f"p{priority}"}, session_id="sA", priority=priority
        )
    # then: the running one finishes; nothing new starts
    ledger.wait_state(first.id, TaskState.COMPLETED)
    time.sleep(1.5)
    assert _started(counter) == ["first"]
    # when: resumed
    assert sessions.resume_session(app, "sA", by="ops") is True
    wait_for(lambda: len(_started(counter)) == 6, 30, "the held tasks to run")
    # then: most urgent first (window 1: one at a time)
    assert _started(counter) == ["first", "p5", "p4", "p3", "p2", "p1"]
    with transaction() as conn:
        from jobs import queries

        audit = [e.event_type for e in queries.events_by_type(conn, "session_paused")]
        audit += [e.event_type for e in queries.events_by_type(conn, "session_resumed")]
        by = {e.payload["by"] for e in queries.events_by_type(conn, "session_paused")}
    assert audit == ["session_paused", "session_resumed"] and by == {"ops"}


def test_paused_queue_refuses_messages_already_in_redis(
    cluster: Cluster, clean: None, counter
) -> None:
    queue = ledger.task(enqueue(app, "s.pay", [1]).id).queue
    sessions.pause_queue(app, queue, by="ops")
    try:
        # when: sessionless tasks are published at once, into Redis
        handles = [enqueue(app, "s.work", [0.01], {"label": f"q{i}"}) for i in range(4)]
        assert all(ledger.task(h.id).dispatch_count >= 1 for h in handles)
        time.sleep(2.0)
        # then: the workers took the messages but the claim refused them
        assert _started(counter) == []
        assert {ledger.task(h.id).state for h in handles} == {TaskState.QUEUED}
    finally:
        assert sessions.resume_queue(app, queue, by="ops") is True
    for h in handles:
        ledger.wait_state(h.id, TaskState.COMPLETED)
    assert sorted(_started(counter)) == ["q0", "q1", "q2", "q3"]


def test_two_users_sessions_are_isolated(cluster: Cluster, clean: None, counter) -> None:
    with transaction() as conn:
        sessions.set_session(conn, "alice-1", user_id="alice", labels={"team": "red"})
        sessions.set_session(conn, "bob-1", user_id="bob")
    a = [enqueue(app, "s.work", [0.01], {"label": f"a{i}"}, session_id="alice-1") for i in range(3)]
    b = [enqueue(app, "s.work", [0.01], {"label": f"b{i}"}, session_id="bob-1") for i in range(3)]
    # tasks belong to their session's owner
    assert {ledger.task(h.id).user_id for h in a} == {"alice"}
    assert {ledger.task(h.id).user_id for h in b} == {"bob"}
    # pausing alice's session does not hold bob's work
    sessions.pause_session(app, "alice-1", by="alice")
    extra_a = enqueue(app, "s.work", [0.01], {"label": "a-late"}, session_id="alice-1")
    extra_b = enqueue(app, "s.work", [0.01], {"label": "b-late"}, session_id="bob-1")
    ledger.wait_state(extra_b.id, TaskState.COMPLETED)
    assert ledger.task(extra_a.id).state is TaskState.QUEUED
    # cancelling alice's session never touches bob's tasks
    assert bulk.cancel_where(app, by="alice", session_id="alice-1", user_id="alice") >= 1
    assert ledger.task(extra_a.id).state is TaskState.CANCELLED
    for h in b:
        assert ledger.wait_state(h.id, TaskState.COMPLETED)
    # listing is scoped by user, with counts per state
    with transaction() as conn:
        mine = sessions.list_sessions(conn, user_id="alice")
        everyone = sessions.list_sessions(conn)
    assert [s["id"] for s in mine] == ["alice-1"]
    assert mine[0]["labels"] == {"team": "red"} and mine[0]["paused"] is True
    assert mine[0]["counts"].get("cancelled", 0) >= 1
    assert {s["id"] for s in everyone} >= {"alice-1", "bob-1"}
    assert "a-late" not in [x.decode() for x in counter.lrange("work:started", 0, -1)]
