"""Goal operations the HTTP API needs beyond jobs/operations.py: edit and cancel a goal.

Each is one transaction, then its messages, like jobs/operations.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row

from jobs import cancel, queries
from jobs.dispatch import Dispatch, release
from jobs.durable import publish_quietly
from jobs.transitions import move_goal, move_tasks
from models import GoalStatus, Task, TaskState, utcnow
from models.db import transaction
from models.settings import get_settings


def update_goal(goal_id: uuid.UUID, changes: Mapping[str, Any]) -> Row[Any]:
    """Edit a goal's title, description, priority or metadata (never its status)."""
    with transaction() as conn:
        return queries.update_goal(conn, goal_id, changes)


def cancel_goal(app: Any, goal_id: uuid.UUID, *, reason: str = "goal cancelled") -> int:
    """Cancel a goal and every step not yet finished; returns how many steps were cancelled.

    A goal that already ended (completed, failed or cancelled) keeps its status; only
    its unfinished steps, if any, are cancelled. Running steps get their signal.
    """
    settings = get_settings()
    now = utcnow()
    with transaction() as conn:
        queries.get_goal(conn, goal_id)  # NotFound before anything is written
        rows = move_tasks(
            conn,
            [Task.goal_id == goal_id],
            TaskState.CANCELLED,
            values={"worker_id": None},
            events=[("task_cancelled", {"reason": reason, "bulk": "goal"})],
            now=now,
        )
        move_goal(
            conn,
            goal_id,
            GoalStatus.CANCELLED,
            event=("goal_cancelled", {"reason": reason, "steps_cancelled": len(rows)}),
            now=now,
            strict=False,
        )
        # A cancelled step may have held a place in its session's window: let the next in.
        dispatches: list[Dispatch] = release(
            conn,
            sessions={r.session_id for r in rows if r.session_id is not None},
            now=now,
            default_window=settings.session_concurrency,
        )
    publish_quietly(app, dispatches, settings)
    cancel.notify_running(settings, [r.id for r in rows])
    return len(rows)
