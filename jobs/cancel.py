"""Cancelling tasks: the row first (final, never starts again), then the running code.

The state change is the cancellation. Code already running learns of it from
a Redis pub/sub message within milliseconds (``workers/cancel.py`` listens in
every worker process) and, whatever the broker, from its lease renewal. A
running attempt keeps its lease after the cancel, so it still holds its
session slot until its code has really stopped: it returned
(``execution.stopped_after_cancel``), or its process was terminated after
``TASKLEDGER_CANCEL_GRACE_SECONDS`` and the lease lapsed (the reaper).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import redis
from sqlalchemy import Connection, Row, text, update

from jobs import goals, waiting
from jobs.dispatch import Dispatch
from jobs.execution import after_leaving_window
from jobs.leases import db_now as now_of
from jobs.leases import lease_until
from jobs.transitions import TASK_COLUMNS, move_task, move_tasks, write_events
from models import Task, TaskState
from models.broker import redis_client
from models.settings import Settings
from models.states import task_sources

log = logging.getLogger(__name__)

CANCEL_CHANNEL = "taskledger:cancel"
# A cancel keeps whatever lease the row has: a running attempt's code is still running.
KEEP_LEASE = {"worker_id": Task.worker_id, "lease_expires_at": Task.lease_expires_at}


def cancel_task(
    conn: Connection, task_id: uuid.UUID, *, reason: str, now: datetime, default_window: int
) -> tuple[Row[Any], list[Dispatch]]:
    """Cancel one task from any non-final state. Raises InvalidTransition if it is final."""
    row = _cancel_in_one_statement(conn, task_id, reason=reason, now=now) or move_task(
        conn,  # not cancellable: the strict move says why (NotFound, InvalidTransition)
        task_id,
        TaskState.CANCELLED,
        values=KEEP_LEASE,
        events=[("task_cancelled", {"reason": reason})],
        now=now,
    )
    assert row is not None  # strict move: raised otherwise
    dispatches = after_leaving_window(
        conn,
        session_id=row.session_id,
        goal_id=row.goal_id,
        now=now,
        default_window=default_window,
    )
    return row, dispatches


_COLUMNS = ", ".join(c.name for c in TASK_COLUMNS)
_SOURCES = ", ".join(f"'{state.value}'" for state in sorted(task_sources(TaskState.CANCELLED)))
# A plain CTE runs only if read: the join at the end makes the NOTIFY happen.
_CANCEL_ONE = text(
    f"""
    WITH moved AS (
        UPDATE tasks SET state = 'cancelled', updated_at = :now, finished_at = :now
         WHERE id = :id AND state IN ({_SOURCES})
     RETURNING {_COLUMNS}
    ), event AS (
        INSERT INTO task_events (task_id, goal_id, event_type, payload, created_at)
        SELECT id, goal_id, 'task_cancelled', CAST(:payload AS jsonb), :now FROM moved
    ), notified AS (
        SELECT count(pg_notify(:channel, id::text)) AS n FROM moved
    )
    SELECT moved.* FROM moved, notified"""
).columns(*TASK_COLUMNS)


def _cancel_in_one_statement(
    conn: Connection, task_id: uuid.UUID, *, reason: str, now: datetime
) -> Row[Any] | None:
    """``move_task`` to cancelled (lease kept), its event and the waiters' notification
    (``waiting.notify_final``) in one prepared statement: one round trip instead of
    three, and no per-call statement building, which was most of a cancel's time before
    its signal could go out (3.5 of 4.7 ms). None if the task is not cancellable."""
    params = {
        "id": task_id,
        "now": now,
        "payload": json.dumps({"reason": reason}),
        "channel": waiting.CHANNEL,
    }
    return conn.execute(_CANCEL_ONE, params).one_or_none()


def cancel_session(
    conn: Connection, session_id: str, *, reason: str, now: datetime
) -> list[Row[Any]]:
    """Cancel every unfinished task of a session in one UPDATE (seed 002's 5,000 queued),
    then settle the goals those tasks belonged to (cancelled, with their later steps)."""
    rows = move_tasks(
        conn,
        [Task.session_id == session_id],
        TaskState.CANCELLED,
        values=KEEP_LEASE,
        events=[("task_cancelled", {"reason": reason, "bulk": "session"})],
        now=now,
    )
    for goal_id in sorted({r.goal_id for r in rows if r.goal_id is not None}):
        goals.advance(conn, goal_id, now)  # a cancelled step cancels its goal: queues nothing
    return rows


def mark_terminating(
    conn: Connection, task_id: uuid.UUID, *, pid: int, grace_s: float, lease_s: float
) -> bool:
    """The process running a cancelled attempt is about to be killed: its lease is cut
    to ``lease_s`` (the kill lands well within it), so the reaper frees the slot soon
    after the process is gone and not before."""
    row = conn.execute(
        update(Task)
        .where(
            Task.id == task_id,
            Task.state == TaskState.CANCELLED,
            Task.worker_id.endswith(f":{pid}"),  # worker ids are "node:pid"
            Task.lease_expires_at.is_not(None),
        )
        .values(lease_expires_at=lease_until(lease_s))
        .returning(Task.id, Task.goal_id, Task.attempts)
    ).one_or_none()
    if row is None:
        return False
    write_events(
        conn,
        [cast(Row[Any], row)],
        [("task_terminated", {"attempt": row.attempts, "grace_s": grace_s})],
        now_of(conn),
    )
    return True


def notify_running(settings: Settings, task_ids: Sequence[uuid.UUID]) -> None:
    """Tell worker processes to set these tasks' cancellation events (Redis pub/sub)."""
    if not task_ids:
        return
    try:
        redis_client(settings.resolved_broker_url).publish(
            CANCEL_CHANNEL, json.dumps([str(i) for i in task_ids])
        )
    except redis.RedisError:
        # The lease renewal notices the cancelled row within one heartbeat anyway.
        log.warning("could not publish cancellation; workers will see it at their next heartbeat")
