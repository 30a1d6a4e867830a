"""Sessions and queues as things people control: owner, window, labels, pause and resume.

Pausing is a flag, not a state change: queued tasks stay queued, running work
finishes, nothing new starts (``jobs/holds.py`` keeps the dispatch window and the
claim from taking a paused session's or queue's tasks, even messages already in
Redis). Resuming releases the held work through the dispatch window, most urgent
first. Every pause and resume is an audit event naming who did it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs import errors
from jobs.budgets import all_budgets
from jobs.dispatch import Dispatch, publish, reserve_due
from jobs.enqueue import NAME_LIMIT
from jobs.transitions import record_event
from models import AgentSession, QueuePause, Task, TaskState, utcnow
from models.db import transaction
from models.settings import get_settings


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_LIMIT:
        raise errors.InvalidOption(f"{what} must be a non-empty string of at most 200 characters")
    return value


def set_session(
    conn: Connection,
    session_id: str,
    *,
    user_id: str | None = None,
    concurrency: int | None = None,
    labels: Mapping[str, Any] | None = None,
) -> Row[Any]:
    """Create or update a session; only the given fields change."""
    _text("session_id", session_id)
    values: dict[str, Any] = {}
    if user_id is not None:
        values["user_id"] = _text("user_id", user_id)
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise errors.InvalidOption(f"concurrency must be an integer >= 1; got {concurrency!r}")
        values["concurrency"] = concurrency
    if labels is not None:
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int | float | bool)
            for k, v in labels.items()
        ):
            raise errors.InvalidOption("labels must map strings to strings, numbers or booleans")
        values["labels"] = dict(labels)
    stmt = pg_insert(AgentSession).values(id=session_id, created_at=utcnow(), **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[AgentSession.id], set_=values or {"id": session_id}
    )
    return conn.execute(stmt.returning(*AgentSession.__table__.c)).one()


def list_sessions(conn: Connection, *, user_id: str | None = None) -> list[dict[str, Any]]:
    """Every session that has a row or a task (of ``user_id``: owned by them, or holding
    their tasks), with its task counts per state."""
    task_filter: list[Any] = [Task.session_id.is_not(None)]
    if user_id is not None:
        task_filter.append(Task.user_id == user_id)
    counts: dict[str, dict[str, int]] = {}
    for session_id, state, n in conn.execute(
        select(Task.session_id, Task.state, func.count())
        .where(*task_filter)
        .group_by(Task.session_id, Task.state)
    ):
        counts.setdefault(str(session_id), {})[TaskState(state).value] = int(n)
    rows = select(*AgentSession.__table__.c)
    if user_id is not None:
        rows = rows.where((AgentSession.user_id == user_id) | AgentSession.id.in_(list(counts)))
    default = get_settings().session_concurrency
    out = {
        row.id: {
            "id": row.id,
            "user_id": row.user_id,
            "concurrency": row.concurrency,
            "paused": row.paused,
            "labels": dict(row.labels or {}),
        }
        for row in conn.execute(rows)
    }
    for session_id in counts:
        out.setdefault(
            session_id,
            {"id": session_id, "user_id": None, "concurrency": None, "paused": False, "labels": {}},
        )
    spend = all_budgets(conn, list(out))  # jobs/budgets.py: limits and spend, if any
    for entry in out.values():
        entry["counts"] = counts.get(entry["id"], {})
        entry["window"] = entry["concurrency"] or default
        entry["budget"] = spend.get(entry["id"])
    return sorted(out.values(), key=lambda e: e["id"])


def _release_all(app: Any) -> int:
    """After a resume: publish what may run now, most urgent first (the dispatch window)."""
    settings = get_settings()
    with transaction() as conn:
        dispatches: list[Dispatch] = reserve_due(
            conn,
            utcnow(),
            batch=settings.sweep_batch_size,
            default_window=settings.session_concurrency,
        )
    publish(app, dispatches, grace_s=settings.timeout_grace_seconds)
    return len(dispatches)


def pause_session(app: Any, session_id: str, *, by: str) -> bool:
    """Nothing new of the session starts until it is resumed; returns False if it was paused."""
    _text("session_id", session_id)
    _text("by", by)
    now = utcnow()
    with transaction() as conn:
        before = conn.execute(
            select(AgentSession.paused).where(AgentSession.id == session_id).with_for_update()
        ).scalar_one_or_none()
        stmt = pg_insert(AgentSession).values(id=session_id, created_at=now, paused=True)
        conn.execute(
            stmt.on_conflict_do_update(index_elements=[AgentSession.id], set_={"paused": True})
        )
        if not before:
            record_event(conn, "session_paused", {"session_id": session_id, "by": by}, now=now)
    return not before


def resume_session(app: Any, session_id: str, *, by: str) -> bool:
    """Lift a session's pause and release its work; returns False if it was not paused."""
    _text("session_id", session_id)
    _text("by", by)
    now = utcnow()
    with transaction() as conn:
        row = conn.execute(
            select(AgentSession.paused).where(AgentSession.id == session_id).with_for_update()
        ).one_or_none()
        if row is None:
            if not _has_tasks(conn, Task.session_id == session_id):
                raise errors.NotFound(f"no session {session_id!r}")
            return False
        if not row.paused:
            return False
        conn.execute(update(AgentSession).where(AgentSession.id == session_id).values(paused=False))
        record_event(conn, "session_resumed", {"session_id": session_id, "by": by}, now=now)
    _release_all(app)
    return True


def pause_queue(app: Any, queue: str, *, by: str) -> bool:
    """Nothing new from the queue starts until it is resumed; False if it was paused."""
    _text("queue", queue)
    _text("by", by)
    now = utcnow()
    with transaction() as conn:
        stmt = pg_insert(QueuePause).values(queue=queue, paused_by=by, paused_at=now)
        added = conn.execute(stmt.on_conflict_do_nothing().returning(QueuePause.queue)).first()
        if added:
            record_event(conn, "queue_paused", {"queue": queue, "by": by}, now=now)
    return added is not None


def resume_queue(app: Any, queue: str, *, by: str) -> bool:
    """Lift a queue's pause and release its work; False if it was not paused."""
    _text("queue", queue)
    _text("by", by)
    now = utcnow()
    with transaction() as conn:
        gone = conn.execute(
            delete(QueuePause).where(QueuePause.queue == queue).returning(QueuePause.queue)
        ).first()
        if gone is None:
            return False
        record_event(conn, "queue_resumed", {"queue": queue, "by": by}, now=now)
    _release_all(app)
    return True


def paused_queues(conn: Connection) -> list[str]:
    return list(conn.execute(select(QueuePause.queue).order_by(QueuePause.queue)).scalars())


def _has_tasks(conn: Connection, where: Any) -> bool:
    return conn.execute(select(Task.id).where(where).limit(1)).first() is not None
