"""Cursor-paged reads for the HTTP API and the task monitor. Nothing here writes.

Pages are keyset pages, newest first: the cursor names the last row shown, so a
page costs the same at row 10 as at row 10,000 and rows inserted meanwhile never
shift what comes next (OFFSET paging would repeat or skip them). ``user_id``
scopes every read to one owner; ``None`` means all (admins).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, func, select, tuple_

from jobs import errors
from models import Goal, GoalStatus, Task, TaskEvent, TaskState

MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    items: list[Row[Any]]
    next_cursor: str | None


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else str(p) for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The parts of a cursor made by ``encode_cursor``; InvalidOption if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for kind, part in zip(kinds, parts, strict=True):
            if kind is datetime:
                value = datetime.fromisoformat(part)
                if value.tzinfo is None:
                    raise ValueError("naive time")
                out.append(value)
            else:
                out.append(kind(part))
        return out
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise errors.InvalidOption(
            "cursor is not one this API returned; pass next_cursor unchanged"
        ) from None


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidOption(f"limit must be from 1 to {MAX_LIMIT}; got {limit!r}")
    return limit


def owner_filter(user_id: str | None) -> list[ColumnElement[bool]]:
    return [] if user_id is None else [Task.__table__.c.user_id == user_id]


# -- tasks ----------------------------------------------------------------------------------


def get_task(conn: Connection, task_id: uuid.UUID, *, user_id: str | None = None) -> Row[Any]:
    """One task; NotFound also when it belongs to someone else (ids must not leak)."""
    row = conn.execute(
        select(*Task.__table__.c).where(Task.id == task_id, *owner_filter(user_id))
    ).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    return row


def page_tasks(
    conn: Connection,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    state: TaskState | None = None,
    name: str | None = None,
    goal_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Tasks newest first (created_at, then id), filtered; ``since``/``until`` bound created_at."""
    limit = _limit(limit)
    where: list[ColumnElement[bool]] = owner_filter(user_id)
    if session_id is not None:
        where.append(Task.session_id == session_id)
    if state is not None:
        where.append(Task.state == state)
    if name is not None:
        where.append(Task.name == name)
    if goal_id is not None:
        where.append(Task.goal_id == goal_id)
    if since is not None:
        where.append(Task.created_at >= since)
    if until is not None:
        where.append(Task.created_at < until)
    if cursor is not None:
        at, last_id = decode_cursor(cursor, [datetime, uuid.UUID])
        where.append(tuple_(Task.created_at, Task.id) < tuple_(at, last_id))
    rows = list(
        conn.execute(
            select(*Task.__table__.c)
            .where(*where)
            .order_by(Task.created_at.desc(), Task.id.desc())
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


def goal_steps(conn: Connection, goal_id: uuid.UUID) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(*Task.__table__.c).where(Task.goal_id == goal_id).order_by(Task.step_index)
        )
    )


def page_events(
    conn: Connection, task_id: uuid.UUID, *, limit: int = 100, cursor: str | None = None
) -> Page:
    """A task's audit trail, oldest first (it reads like a log)."""
    limit = _limit(limit)
    where: list[ColumnElement[bool]] = [TaskEvent.task_id == task_id]
    if cursor is not None:
        (after,) = decode_cursor(cursor, [int])
        where.append(TaskEvent.id > after)
    rows = list(
        conn.execute(
            select(*TaskEvent.__table__.c).where(*where).order_by(TaskEvent.id).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].id) if more else None)


# -- goals ----------------------------------------------------------------------------------


def get_goal(conn: Connection, goal_id: uuid.UUID, *, user_id: str | None = None) -> Row[Any]:
    where = [Goal.id == goal_id] + ([] if user_id is None else [Goal.user_id == user_id])
    row = conn.execute(select(*Goal.__table__.c).where(*where)).one_or_none()
    if row is None:
        raise errors.NotFound(f"no goal {goal_id}")
    return row


def page_goals(
    conn: Connection,
    *,
    user_id: str | None = None,
    status: GoalStatus | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    limit = _limit(limit)
    where: list[ColumnElement[bool]] = [] if user_id is None else [Goal.user_id == user_id]
    if status is not None:
        where.append(Goal.status == status)
    if cursor is not None:
        at, last_id = decode_cursor(cursor, [datetime, uuid.UUID])
        where.append(tuple_(Goal.created_at, Goal.id) < tuple_(at, last_id))
    rows = list(
        conn.execute(
            select(*Goal.__table__.c)
            .where(*where)
            .order_by(Goal.created_at.desc(), Goal.id.desc())
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None)


def step_counts(conn: Connection, goal_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Steps by state for each goal (the "Processing 3/10" line)."""
    out: dict[uuid.UUID, dict[str, int]] = {}
    ids = list(goal_ids)
    if not ids:
        return out
    stmt = (
        select(Task.goal_id, Task.state, func.count())
        .where(Task.goal_id.in_(ids))
        .group_by(Task.goal_id, Task.state)
    )
    for goal_id, state, n in conn.execute(stmt):
        if goal_id is not None:
            out.setdefault(goal_id, {})[TaskState(state).value] = int(n)
    return out


# -- counts ---------------------------------------------------------------------------------


def session_counts(
    conn: Connection, session_ids: Iterable[str], *, user_id: str | None = None
) -> dict[str, dict[str, int]]:
    """Tasks by state for each session (one grouped query over the (session, state) index)."""
    ids = sorted(set(session_ids))
    out: dict[str, dict[str, int]] = {s: {} for s in ids}
    if not ids:
        return out
    stmt = (
        select(Task.session_id, Task.state, func.count())
        .where(Task.session_id.in_(ids), *owner_filter(user_id))
        .group_by(Task.session_id, Task.state)
    )
    for session_id, state, n in conn.execute(stmt):
        if session_id is not None:
            out[session_id][TaskState(state).value] = int(n)
    return out


@dataclass(frozen=True)
class Stats:
    counts: dict[str, int]
    avg_wait_ms: float | None
    avg_processing_ms: float | None
    completed: int


def stats(conn: Connection, *, user_id: str | None = None, session_id: str | None = None) -> Stats:
    """Counts by state and average wait / processing time of completed tasks (seed 004)."""
    where = owner_filter(user_id)
    if session_id is not None:
        where.append(Task.session_id == session_id)
    counts = {state.value: 0 for state in TaskState}
    for state, n in conn.execute(
        select(Task.state, func.count()).where(*where).group_by(Task.state)
    ):
        counts[TaskState(state).value] = int(n)
    wait = func.extract("epoch", Task.started_at - Task.scheduled_for)
    work = func.extract("epoch", Task.finished_at - Task.started_at)
    row = conn.execute(
        select(func.avg(wait), func.avg(work), func.count()).where(
            Task.state == TaskState.COMPLETED, *where
        )
    ).one()
    return Stats(
        counts=counts,
        avg_wait_ms=None if row[0] is None else round(float(row[0]) * 1000, 3),
        avg_processing_ms=None if row[1] is None else round(float(row[1]) * 1000, 3),
        completed=int(row[2]),
    )
