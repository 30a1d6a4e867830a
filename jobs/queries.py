"""Read side: the repository queries of seeds 000 and 004. Nothing here writes state."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, delete, func, select, update

from jobs import errors
from jobs.transitions import record_goal_event
from models import Goal, GoalStatus, Task, TaskEvent, TaskState, utcnow

MAX_PAGE = 1000


def _page(limit: int, offset: int) -> tuple[int, int]:
    if limit < 1 or offset < 0:
        raise errors.InvalidOption("limit must be >= 1 and offset >= 0")
    return min(limit, MAX_PAGE), offset


# -- tasks ----------------------------------------------------------------------------------


def get_task(conn: Connection, task_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(select(*Task.__table__.c).where(Task.id == task_id)).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    return row


def list_tasks(
    conn: Connection,
    *,
    state: TaskState | None = None,
    session_id: str | None = None,
    name: str | None = None,
    goal_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Row[Any]]:
    """Newest first; filter by any of state, session, task name and goal."""
    limit, offset = _page(limit, offset)
    stmt = select(*Task.__table__.c)
    if state is not None:
        stmt = stmt.where(Task.state == state)
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    if name is not None:
        stmt = stmt.where(Task.name == name)
    if goal_id is not None:
        stmt = stmt.where(Task.goal_id == goal_id)
    stmt = stmt.order_by(Task.created_at.desc(), Task.id).limit(limit).offset(offset)
    return list(conn.execute(stmt))


def list_by_goal(
    conn: Connection, goal_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[Row[Any]]:
    limit, offset = _page(limit, offset)
    stmt = (
        select(*Task.__table__.c)
        .where(Task.goal_id == goal_id)
        .order_by(Task.step_index)
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(stmt))


def list_by_state(
    conn: Connection, state: TaskState, limit: int = 50, offset: int = 0
) -> list[Row[Any]]:
    return list_tasks(conn, state=state, limit=limit, offset=offset)


def ready_to_retry(now: datetime, limit: int) -> Select[Any]:
    """seed 000's listReadyToRetry: failed attempts whose backoff is over, oldest due first."""
    return (
        select(*Task.__table__.c)
        .where(Task.state == TaskState.RETRY_WAIT, Task.backoff_until <= now)
        .order_by(Task.backoff_until)
        .limit(limit)
    )


def list_ready_to_retry(
    conn: Connection, limit: int = 100, now: datetime | None = None
) -> list[Row[Any]]:
    return list(conn.execute(ready_to_retry(now or utcnow(), limit)))


def peek(
    conn: Connection, *, session_id: str | None = None, name: str | None = None, limit: int = 10
) -> list[Row[Any]]:
    """The queued tasks that would be dispatched next, without taking them (seed 004)."""
    limit, _ = _page(limit, 0)
    stmt = select(*Task.__table__.c).where(Task.state == TaskState.QUEUED)
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    if name is not None:
        stmt = stmt.where(Task.name == name)
    stmt = stmt.order_by(Task.priority.desc(), Task.scheduled_for, Task.created_at).limit(limit)
    return list(conn.execute(stmt))


# -- events ---------------------------------------------------------------------------------


def _events(conn: Connection, where: Any, limit: int, offset: int) -> list[Row[Any]]:
    limit, offset = _page(limit, offset)
    stmt = (
        select(*TaskEvent.__table__.c)
        .where(where)
        .order_by(TaskEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(stmt))


def task_events(
    conn: Connection, task_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[Row[Any]]:
    """The audit trail of one task, newest first."""
    return _events(conn, TaskEvent.task_id == task_id, limit, offset)


def events_by_type(
    conn: Connection, event_type: str, limit: int = 100, offset: int = 0
) -> list[Row[Any]]:
    return _events(conn, TaskEvent.event_type == event_type, limit, offset)


def goal_events(
    conn: Connection, goal_id: uuid.UUID, limit: int = 200, offset: int = 0
) -> list[Row[Any]]:
    """Every event of a goal and its steps, newest first."""
    return _events(conn, TaskEvent.goal_id == goal_id, limit, offset)


# -- goals ----------------------------------------------------------------------------------


def get_goal(conn: Connection, goal_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(select(*Goal.__table__.c).where(Goal.id == goal_id)).one_or_none()
    if row is None:
        raise errors.NotFound(f"no goal {goal_id}")
    return row


def list_goals(
    conn: Connection,
    *,
    user_id: str | None = None,
    status: GoalStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Row[Any]]:
    limit, offset = _page(limit, offset)
    stmt = select(*Goal.__table__.c)
    if user_id is not None:
        stmt = stmt.where(Goal.user_id == user_id)
    if status is not None:
        stmt = stmt.where(Goal.status == status)
    stmt = stmt.order_by(Goal.created_at.desc(), Goal.id).limit(limit).offset(offset)
    return list(conn.execute(stmt))


GOAL_EDITABLE = frozenset({"title", "description", "priority", "metadata"})


def update_goal(conn: Connection, goal_id: uuid.UUID, changes: Mapping[str, Any]) -> Row[Any]:
    """Edit a goal's descriptive fields. Status moves only through the state machine."""
    bad = set(changes) - GOAL_EDITABLE
    if bad:
        raise errors.InvalidOption(
            f"cannot update {sorted(bad)}; editable: {sorted(GOAL_EDITABLE)} "
            "(status changes through start, resume and cancel)"
        )
    now = utcnow()
    row = conn.execute(
        update(Goal)
        .where(Goal.id == goal_id)
        .values(**changes, updated_at=now)
        .returning(*Goal.__table__.c)
    ).one_or_none()
    if row is None:
        raise errors.NotFound(f"no goal {goal_id}")
    record_goal_event(conn, goal_id, "goal_updated", {"fields": sorted(changes)}, now=now)
    return row


def delete_goal(conn: Connection, goal_id: uuid.UUID) -> None:
    """Delete a goal, its tasks and their events (seed 000: cascades via FK)."""
    if conn.execute(delete(Goal).where(Goal.id == goal_id)).rowcount == 0:
        raise errors.NotFound(f"no goal {goal_id}")


# -- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]
    avg_wait_ms: float | None  # due -> started, over completed tasks
    avg_processing_ms: float | None  # started -> finished, over completed tasks
    completed: int


def _seconds_between(conn: Connection, later: Any, earlier: Any) -> Any:
    return func.extract("epoch", later - earlier)


def stats(conn: Connection, *, session_id: str | None = None) -> QueueStats:
    where = [] if session_id is None else [Task.session_id == session_id]
    counts = {state.value: 0 for state in TaskState}
    for state, n in conn.execute(
        select(Task.state, func.count()).where(*where).group_by(Task.state)
    ):
        counts[TaskState(state).value] = int(n)
    wait = _seconds_between(conn, Task.started_at, Task.scheduled_for)
    work = _seconds_between(conn, Task.finished_at, Task.started_at)
    row = conn.execute(
        select(func.avg(wait), func.avg(work), func.count()).where(
            Task.state == TaskState.COMPLETED, *where
        )
    ).one()
    return QueueStats(
        counts=counts,
        avg_wait_ms=None if row[0] is None else round(float(row[0]) * 1000, 3),
        avg_processing_ms=None if row[1] is None else round(float(row[1]) * 1000, 3),
        completed=int(row[2]),
    )
