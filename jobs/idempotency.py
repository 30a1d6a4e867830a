"""Idempotency keys: a second enqueue with the same key gets the first task's id.

A key stays taken while its task is unfinished and for
``TASKLEDGER_IDEMPOTENCY_WINDOW_SECONDS`` after it finished; within that time an
enqueue with the key writes nothing and returns the holder's id. After it, the old
task lets go of the key (an ``idempotency_key_released`` event keeps it in the audit
trail) and the enqueue creates a new task.

Race-free: enqueues of one key are serialised by a transaction-scoped advisory lock,
so the second waits for the first to commit and then finds its row; the partial
unique index ``uq_tasks_idempotency_key`` is the backstop the database enforces.

A key given with an owner (``user_id``: the API and MCP over HTTP always name one) is
that owner's: it is stored as ``<user_id>:<key>``, so two users never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Row, func, select, update

from jobs import errors
from jobs.transitions import write_events
from models import Task
from models.settings import get_settings
from models.states import FINAL_TASK_STATES

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

KEY_LIMIT = 200


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > 150:
        raise errors.InvalidOption(
            f"idempotency_key must be a non-empty string of at most 150 characters; got {key!r}"
        )
    return key


def stored_key(key: str, user_id: str | None) -> str:
    """The value kept in ``tasks.idempotency_key``: scoped to the owner when there is one."""
    stored = key if user_id is None else f"{user_id}:{key}"
    if len(stored) > KEY_LIMIT:
        raise errors.InvalidOption("idempotency_key plus user id is longer than 200 characters")
    return stored


def resolve(
    conn: Connection, specs: Sequence[TaskSpec], now: datetime
) -> tuple[list[TaskSpec], list[uuid.UUID]]:
    """The specs still to write, and the id each call answers with (in call order)."""
    window = timedelta(seconds=get_settings().idempotency_window_seconds)
    keep: list[TaskSpec] = []
    ids: list[uuid.UUID] = []
    seen: dict[str, uuid.UUID] = {}  # a key used twice within one batch
    for spec in specs:
        key = spec.flow.idempotency_key if spec.flow is not None else None
        if key is None:
            keep.append(spec)
            ids.append(spec.id)
            continue
        if key in seen:
            ids.append(seen[key])
            continue
        holder = _holder(conn, key, now - window, now)
        seen[key] = holder or spec.id
        ids.append(seen[key])
        if holder is None:
            keep.append(spec)
    return keep, ids


def _holder(conn: Connection, key: str, cutoff: datetime, now: datetime) -> uuid.UUID | None:
    """The task holding ``key``, or None once the key is free (a stale holder lets go)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("tl-idem:" + key))))
    row = conn.execute(
        select(Task.id, Task.goal_id, Task.state, Task.finished_at).where(
            Task.idempotency_key == key
        )
    ).one_or_none()
    if row is None:
        return None
    finished = row.state in FINAL_TASK_STATES and row.finished_at is not None
    if not finished or row.finished_at > cutoff:
        return uuid.UUID(str(row.id))
    conn.execute(update(Task).where(Task.id == row.id).values(idempotency_key=None))
    write_events(conn, [cast(Row[Any], row)], [("idempotency_key_released", {"key": key})], now)
    return None
