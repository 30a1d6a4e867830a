"""Goals run their steps in step_index order; resume carries on with no replay."""

from __future__ import annotations

import itertools

import pytest

from jobs import operations
from jobs.queries import get_goal, goal_events, list_by_goal
from models import GoalStatus, TaskState
from models.db import transaction
from tests.support import tasks
from tests.support.services import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def goal_status(goal_id) -> GoalStatus:
    with transaction() as conn:
        return get_goal(conn, goal_id).status


def steps(goal_id) -> list:
    with transaction() as conn:
        return list_by_goal(conn, goal_id)


def test_goal_runs_steps_in_order_then_completes(cluster: Cluster, counter) -> None:
    goal_id = operations.create_goal(
        tasks.app,
        title="three steps",
        user_id="u1",
        steps=[("t.step", (label,), {}, {}) for label in ("a", "b", "c")],
    )

    wait_for(lambda: goal_status(goal_id) is GoalStatus.COMPLETED, 20, "goal completed")
    assert [s.decode() for s in counter.lrange("steps", 0, -1)] == ["a", "b", "c"]
    rows = steps(goal_id)
    assert [r.step_index for r in rows] == [0, 1, 2]
    assert all(r.state is TaskState.COMPLETED for r in rows)
    # each step started only after the one before it completed
    for before, after in itertools.pairwise(rows):
        assert before.finished_at <= after.started_at
    with transaction() as conn:
        types = [e.event_type for e in goal_events(conn, goal_id) if e.task_id is None]
    assert types[::-1] == ["goal_created", "goal_started", "goal_completed"]


def test_failed_step_fails_goal_and_resume_does_not_replay(cluster: Cluster, counter) -> None:
    counter.set("block-b", 1)
    goal_id = operations.create_goal(
        tasks.app,
        title="resume me",
        steps=[
            ("t.step", ("a",), {}, {}),
            ("t.step", ("b",), {"fail_key": "block-b"}, {}),
            ("t.step", ("c",), {}, {}),
        ],
    )
    wait_for(lambda: goal_status(goal_id) is GoalStatus.FAILED, 20, "goal failed")
    a, b, c = steps(goal_id)
    assert (a.state, b.state, c.state) == (TaskState.COMPLETED, TaskState.FAILED, TaskState.BLOCKED)

    counter.delete("block-b")
    operations.resume_goal(tasks.app, goal_id)

    wait_for(lambda: goal_status(goal_id) is GoalStatus.COMPLETED, 20, "goal completed")
    # "a" ran once: resume started at the first incomplete step
    assert [s.decode() for s in counter.lrange("steps", 0, -1)] == ["a", "b", "b", "c"]
    assert int(counter.get(f"runs:{a.id}")) == 1
    with transaction() as conn:
        types = [e.event_type for e in goal_events(conn, goal_id) if e.task_id is None][::-1]
    assert types == [
        "goal_created",
        "goal_started",
        "goal_failed",
        "goal_resumed",
        "goal_completed",
    ]


def test_retries_exhausted_fail_the_goal(cluster: Cluster) -> None:
    goal_id = operations.create_goal(
        tasks.app,
        title="doomed",
        steps=[("t.add", (1, 2), {}, {}), ("t.always_fail", (), {}, {"max_retries": 2})],
    )
    wait_for(lambda: goal_status(goal_id) is GoalStatus.FAILED, 20, "goal failed")
    first, doomed = steps(goal_id)
    assert first.state is TaskState.COMPLETED
    assert (doomed.state, doomed.attempts, doomed.retries) == (TaskState.FAILED, 3, 2)
    with transaction() as conn:
        evs = goal_events(conn, goal_id)
    assert any(e.event_type == "task_exhausted_retries" and e.task_id == doomed.id for e in evs)
    failed = next(e for e in evs if e.event_type == "goal_failed")
    assert failed.payload == {"task_id": str(doomed.id), "step_index": 1}
