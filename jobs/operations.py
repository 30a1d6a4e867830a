"""Operations people and programs call: each is one transaction, then its messages.

The API, the CLI and tests go through these; they never publish or write
state on their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Row

from jobs import cancel, goals
from jobs.dispatch import Dispatch, release_rows
from jobs.durable import durable_task, publish_quietly
from jobs.transitions import move_task
from models import TaskState, utcnow
from models.db import transaction
from models.settings import get_settings

T = TypeVar("T")
StepCall = tuple[str, Sequence[Any], Mapping[str, Any], Mapping[str, Any]]


def _run(app: Any, fn: Callable[[Connection], tuple[T, list[Dispatch]]]) -> T:
    with transaction() as conn:
        value, dispatches = fn(conn)
    publish_quietly(app, dispatches, get_settings())
    return value


def _release_rows(conn: Connection, rows: Sequence[Row[Any]]) -> list[Dispatch]:
    return release_rows(conn, rows, now=utcnow(), default_window=get_settings().session_concurrency)


def create_goal(
    app: Any,
    *,
    title: str,
    steps: Sequence[StepCall],
    user_id: str | None = None,
    description: str | None = None,
    priority: int = 0,
    metadata: Mapping[str, Any] | None = None,
    start: bool = True,
) -> uuid.UUID:
    """Write a goal with its ordered steps; start it unless ``start=False``."""
    now = utcnow()
    specs = [
        durable_task(app, name).spec(args, kwargs, now=now, **dict(options))
        for name, args, kwargs, options in steps
    ]

    def write(conn: Connection) -> tuple[uuid.UUID, list[Dispatch]]:
        goal_id = goals.create_goal(
            conn,
            title=title,
            steps=specs,
            now=now,
            user_id=user_id,
            description=description,
            priority=priority,
            metadata=metadata,
        )
        queued = goals.start_goal(conn, goal_id, now) if start else []
        return goal_id, _release_rows(conn, queued)

    return _run(app, write)


def start_goal(app: Any, goal_id: uuid.UUID) -> None:
    _run(app, lambda conn: (None, _release_rows(conn, goals.start_goal(conn, goal_id, utcnow()))))


def resume_goal(app: Any, goal_id: uuid.UUID) -> None:
    """seed 000's resumeGoal: from the first incomplete step, with no replay."""
    _run(app, lambda conn: (None, _release_rows(conn, goals.resume_goal(conn, goal_id, utcnow()))))


def requeue(app: Any, task_id: uuid.UUID, *, reset_retries: bool = True) -> None:
    """Put a failed task back in the queue (seed 004's requeue failed)."""

    def write(conn: Connection) -> tuple[None, list[Dispatch]]:
        values: dict[str, Any] = {"backoff_until": None, "finished_at": None, "dispatched_at": None}
        if reset_retries:
            values["retries"] = 0
        row = move_task(
            conn,
            task_id,
            TaskState.QUEUED,
            sources=[TaskState.FAILED],
            values=values,
            events=[("task_requeued", {"reason": "operator", "reset_retries": reset_retries})],
        )
        assert row is not None
        return None, _release_rows(conn, [row])

    _run(app, write)


def cancel_task(app: Any, task_id: uuid.UUID, *, reason: str = "cancelled by request") -> Row[Any]:
    """Cancel one task; running code gets its cancellation signal."""
    settings = get_settings()

    def write(conn: Connection) -> tuple[Row[Any], list[Dispatch]]:
        return cancel.cancel_task(
            conn, task_id, reason=reason, now=utcnow(), default_window=settings.session_concurrency
        )

    row = _run(app, write)
    cancel.notify_running(settings, [row.id])
    return row


def cancel_session(app: Any, session_id: str, *, reason: str = "session cancelled") -> int:
    """Cancel every unfinished task of a session; returns how many."""
    settings = get_settings()
    with transaction() as conn:
        rows = cancel.cancel_session(conn, session_id, reason=reason, now=utcnow())
    cancel.notify_running(settings, [r.id for r in rows])
    return len(rows)
