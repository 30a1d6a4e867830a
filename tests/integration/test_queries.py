"""Seed 000/004 repository queries against the real Postgres (no worker needed)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from jobs import enqueue_many, errors, operations
from jobs.queries import (
    delete_goal,
    events_by_type,
    get_goal,
    list_by_goal,
    list_by_state,
    list_goals,
    list_ready_to_retry,
    peek,
    stats,
    update_goal,
)
from jobs.transitions import move_task
from models import GoalStatus, Task, TaskState, utcnow
from models.db import transaction
from tests.support import ledger, tasks

pytestmark = pytest.mark.usefixtures("clean")
PULL = {"queue": "pull-only"}  # published where no worker listens: rows stay queued


def make_goal(user: str, title: str) -> uuid.UUID:
    return operations.create_goal(
        tasks.app,
        title=title,
        user_id=user,
        start=False,
        steps=[("t.add", (i, i), {}, PULL) for i in range(3)],
    )


def test_goals_by_user_and_status_with_paging() -> None:
    ids = [make_goal("alice", f"g{i}") for i in range(5)]
    make_goal("bob", "other")
    with transaction() as conn:
        page1 = list_goals(conn, user_id="alice", limit=2)
        page3 = list_goals(conn, user_id="alice", limit=2, offset=4)
        assert [g.title for g in page1] == ["g4", "g3"]
        assert [g.title for g in page3] == ["g0"]
        assert list_goals(conn, user_id="alice", status=GoalStatus.IN_PROGRESS) == []
        steps = list_by_goal(conn, ids[0])
        assert [s.step_index for s in steps] == [0, 1, 2]
        assert all(s.state is TaskState.BLOCKED for s in steps)


def test_update_and_delete_goal_cascade() -> None:
    goal_id = make_goal("alice", "old title")
    with transaction() as conn:
        update_goal(conn, goal_id, {"title": "new title", "priority": 2, "metadata": {"k": 1}})
        goal = get_goal(conn, goal_id)
        assert (goal.title, goal.priority, goal.metadata) == ("new title", 2, {"k": 1})
        with pytest.raises(errors.InvalidOption, match="status"):
            update_goal(conn, goal_id, {"status": "completed"})
    with transaction() as conn:
        delete_goal(conn, goal_id)
    assert ledger.count() == 0 and ledger.count_events() == 0


def test_ready_to_retry_lists_only_due_backoffs() -> None:
    due, later = enqueue_many(tasks.app, [("t.add", (1, 1), {}, PULL)] * 2)
    now = utcnow()
    with transaction() as conn:
        for handle, until in ((due, now - timedelta(seconds=1)), (later, now + timedelta(hours=1))):
            move_task(conn, handle.uuid, TaskState.RUNNING, values={"attempts": 1})
            move_task(
                conn,
                handle.uuid,
                TaskState.RETRY_WAIT,
                values={"retries": 1, "backoff_until": until},
            )
    with transaction() as conn:
        assert [r.id for r in list_ready_to_retry(conn)] == [due.uuid]
        assert {r.id for r in list_by_state(conn, TaskState.RETRY_WAIT)} == {due.uuid, later.uuid}


def test_peek_orders_by_priority_then_age_and_takes_nothing() -> None:
    handles = enqueue_many(
        tasks.app, [("t.add", (p, p), {}, {**PULL, "priority": p}) for p in (1, 4, 4, 2)]
    )
    with transaction() as conn:
        first = peek(conn, limit=3)
    assert [r.id for r in first] == [handles[1].uuid, handles[2].uuid, handles[3].uuid]
    assert ledger.count(Task.state == TaskState.QUEUED) == 4


def test_events_by_type_newest_first_and_stats() -> None:
    handles = enqueue_many(tasks.app, [("t.add", (1, 1), {}, {**PULL, "session_id": "s"})] * 3)
    with transaction() as conn:
        events = events_by_type(conn, "task_created", limit=2)
        assert len(events) == 2 and events[0].id > events[1].id
        move_task(conn, handles[0].uuid, TaskState.CANCELLED)
        st = stats(conn, session_id="s")
    assert st.counts["queued"] == 2 and st.counts["cancelled"] == 1
    assert st.avg_wait_ms is None  # nothing completed yet


def test_illegal_transition_is_refused_and_changes_nothing() -> None:
    (handle,) = enqueue_many(tasks.app, [("t.add", (1, 1), {}, PULL)])
    with (
        transaction() as conn,
        pytest.raises(errors.InvalidTransition, match="queued; it cannot move to completed"),
    ):
        move_task(conn, handle.uuid, TaskState.COMPLETED)
    assert ledger.task(handle.id).state is TaskState.QUEUED
    assert ledger.event_types(handle.id) == ["task_created"]
    with transaction() as conn, pytest.raises(errors.NotFound):
        move_task(conn, uuid.uuid4(), TaskState.CANCELLED)
