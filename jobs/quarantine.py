"""Setting one bad row aside so a sweep never stops on it (DESIGN invariant 10).

A row that a sweep cannot process (an overflowing number, a corrupt payload the
broker refuses) moves to ``failed`` with outcome ``quarantined`` and a
``task_quarantined`` event naming the sweep and the error; its session slot and
goal move on as after any final failure. An operator can requeue it once fixed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from jobs.dispatch import Dispatch
from jobs.transitions import move_task
from models import Outcome, TaskState
from models.db import transaction
from models.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ERROR_TEXT_LIMIT = 2000


def quarantine(
    conn: Connection,
    task_id: uuid.UUID,
    *,
    stage: str,
    error: BaseException | str,
    now: datetime,
    default_window: int,
) -> list[Dispatch]:
    """Move the row to ``failed`` (outcome quarantined); return what may run next."""
    from jobs.execution import after_leaving_window  # execution -> goals -> enqueue -> dispatch

    text = error if isinstance(error, str) else f"{error.__class__.__name__}: {error}"
    text = text[:ERROR_TEXT_LIMIT]
    row = move_task(
        conn,
        task_id,
        TaskState.FAILED,
        sources=[TaskState.QUEUED, TaskState.RETRY_WAIT, TaskState.RUNNING],
        values={
            "last_error": text,
            "last_outcome": str(Outcome.QUARANTINED),
            "worker_id": None,
            "dispatched_at": None,
        },
        events=[("task_quarantined", {"stage": stage, "error": text})],
        now=now,
        strict=False,
    )
    log.error("task %s quarantined by the %s sweep: %s", task_id, stage, text)
    if row is None:
        return []
    try:
        with conn.begin_nested():
            return after_leaving_window(
                conn,
                session_id=row.session_id,
                goal_id=row.goal_id,
                now=now,
                default_window=default_window,
            )
    except Exception:
        log.warning("quarantined %s but could not move its goal/session on", task_id, exc_info=True)
        return []


def quarantine_quietly(task_id: uuid.UUID, *, stage: str, error: BaseException) -> None:
    """Quarantine in a transaction of its own (a message the broker refused)."""
    try:
        with transaction() as conn:
            from models import utcnow

            quarantine(
                conn,
                task_id,
                stage=stage,
                error=error,
                now=utcnow(),
                default_window=get_settings().session_concurrency,
            )
    except Exception:
        log.warning("could not quarantine task %s", task_id, exc_info=True)


def is_outage(exc: BaseException) -> bool:
    """Postgres going away is not a bad row: the whole sweep stops and runs again later."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated or _disconnect(exc))


def _disconnect(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def each_isolated(
    conn: Connection,
    ids: Sequence[uuid.UUID],
    act: Callable[[Sequence[uuid.UUID]], list[T]],
    *,
    stage: str,
    now: datetime,
    default_window: int,
    on_quarantine: Callable[[list[Dispatch]], None] | None = None,
) -> list[T]:
    """``act(ids)`` in one savepoint; if it fails, ``act([id])`` per row, quarantining
    each row that fails on its own. The others proceed."""
    if not ids:
        return []
    try:
        with conn.begin_nested():
            return act(ids)
    except Exception as exc:
        if is_outage(exc):
            raise
        log.warning("%s sweep: a batch of %d failed; retrying row by row", stage, len(ids))
    out: list[T] = []
    for task_id in ids:
        try:
            with conn.begin_nested():
                out.extend(act([task_id]))
        except Exception as exc:
            if is_outage(exc):
                raise
            released = quarantine(
                conn, task_id, stage=stage, error=exc, now=now, default_window=default_window
            )
            if on_quarantine is not None:
                on_quarantine(released)
    return out
