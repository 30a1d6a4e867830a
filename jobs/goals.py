"""Goals: ordered steps run one after another (seed 000's executeGoal / resumeGoal).

A goal's steps are tasks with a ``step_index``. Every step but the current
one waits in ``blocked``. When a step completes (or is skipped) the next is
queued in the same transaction; when one fails for good the goal fails, and
``resume_goal`` carries on from that step. Completed steps are never run
again: resume starts at the first step that is not done.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from jobs import errors
from jobs.enqueue import TaskSpec
from jobs.transitions import create_goal as write_goal
from jobs.transitions import create_tasks, move_goal, move_task, move_tasks
from models import Goal, GoalStatus, Task, TaskState
from models.states import DONE_STEP_STATES


def create_goal(
    conn: Connection,
    *,
    title: str,
    steps: Sequence[TaskSpec],
    now: datetime,
    user_id: str | None = None,
    description: str | None = None,
    priority: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> uuid.UUID:
    """Write a goal (status ``open``) and its steps (all ``blocked``), in order."""
    if not isinstance(title, str) or not title.strip():
        raise errors.InvalidOption("a goal needs a non-empty title")
    if not steps:
        raise errors.InvalidOption("a goal needs at least one step")
    goal_id = uuid.uuid4()
    write_goal(
        conn,
        {
            "id": goal_id,
            "user_id": user_id,
            "title": title,
            "description": description,
            "status": GoalStatus.OPEN,
            "priority": priority,
            "metadata": dict(metadata or {}),
            "created_at": now,
            "updated_at": now,
        },
        now,
    )
    rows = [
        replace(spec, goal_id=goal_id, step_index=index, state=TaskState.BLOCKED).row(now)
        for index, spec in enumerate(steps)
    ]
    create_tasks(conn, rows, now)
    return goal_id


def start_goal(conn: Connection, goal_id: uuid.UUID, now: datetime) -> list[Row[Any]]:
    """open -> in_progress, and queue the first step. Returns the rows queued."""
    move_goal(conn, goal_id, GoalStatus.IN_PROGRESS, event=("goal_started", {}), now=now)
    return advance(conn, goal_id, now)


def resume_goal(conn: Connection, goal_id: uuid.UUID, now: datetime) -> list[Row[Any]]:
    """Carry on from the first step that is not done; completed steps are not replayed."""
    goal = _lock_goal(conn, goal_id)
    if goal.status is GoalStatus.OPEN:
        return start_goal(conn, goal_id, now)
    if goal.status is GoalStatus.FAILED:
        move_goal(conn, goal_id, GoalStatus.IN_PROGRESS, event=("goal_resumed", {}), now=now)
    elif goal.status is not GoalStatus.IN_PROGRESS:
        raise errors.InvalidTransition(f"goal {goal_id} is {goal.status}; it cannot be resumed")
    step = first_open_step(conn, goal_id)
    if step is not None and step.state is TaskState.FAILED:
        # A fresh retry budget: the operator decided the step is worth trying again.
        move_task(
            conn,
            step.id,
            TaskState.QUEUED,
            # dispatched_at cleared: the step needs a fresh message (the window publishes it).
            values={
                "retries": 0,
                "backoff_until": None,
                "finished_at": None,
                "dispatched_at": None,
            },
            events=[("task_requeued", {"reason": "goal_resumed"})],
            now=now,
        )
        return [step]
    return advance(conn, goal_id, now)


def advance(conn: Connection, goal_id: uuid.UUID, now: datetime) -> list[Row[Any]]:
    """Move the goal on after one of its steps changed. Returns the steps newly queued."""
    goal = _lock_goal(conn, goal_id)
    if goal.status is GoalStatus.FAILED:
        # The failed step was requeued (by an operator, the API or the CLI) and is no
        # longer failed: the goal is under way again.
        step = first_open_step(conn, goal_id)
        if step is None or step.state is TaskState.FAILED:
            return []
        move_goal(
            conn,
            goal_id,
            GoalStatus.IN_PROGRESS,
            event=("goal_resumed", {"reason": "step_requeued", "step_index": step.step_index}),
            now=now,
        )
    elif goal.status is not GoalStatus.IN_PROGRESS:
        return []
    step = first_open_step(conn, goal_id)
    if step is None:
        move_goal(conn, goal_id, GoalStatus.COMPLETED, event=("goal_completed", {}), now=now)
        return []
    if step.state is TaskState.FAILED:
        move_goal(
            conn,
            goal_id,
            GoalStatus.FAILED,
            event=("goal_failed", {"task_id": str(step.id), "step_index": step.step_index}),
            now=now,
        )
        return []
    if step.state is TaskState.CANCELLED:
        move_goal(
            conn,
            goal_id,
            GoalStatus.CANCELLED,
            event=("goal_cancelled", {"task_id": str(step.id)}),
            now=now,
        )
        # Settle the later steps too: nothing of a cancelled goal is left waiting.
        move_tasks(
            conn,
            [Task.goal_id == goal_id, Task.step_index > step.step_index],
            TaskState.CANCELLED,
            sources=[TaskState.BLOCKED, TaskState.QUEUED, TaskState.PENDING_APPROVAL],
            events=[("task_cancelled", {"reason": "goal_cancelled"})],
            now=now,
        )
        return []
    if step.state is TaskState.BLOCKED:
        moved = move_task(
            conn,
            step.id,
            TaskState.QUEUED,
            events=[("task_unblocked", {"step_index": step.step_index})],
            now=now,
        )
        return [moved] if moved is not None else []
    return []


def first_open_step(conn: Connection, goal_id: uuid.UUID) -> Any:
    stmt = (
        select(Task.id, Task.state, Task.step_index, Task.session_id)
        .where(Task.goal_id == goal_id, Task.state.not_in(DONE_STEP_STATES))
        .order_by(Task.step_index)
        .limit(1)
    )
    return conn.execute(stmt).one_or_none()


def _lock_goal(conn: Connection, goal_id: uuid.UUID) -> Any:
    # Serialises concurrent advances of one goal (a finishing step and a resume).
    goal = conn.execute(
        select(Goal.id, Goal.status).where(Goal.id == goal_id).with_for_update()
    ).one_or_none()
    if goal is None:
        raise errors.NotFound(f"no goal {goal_id}")
    return goal
