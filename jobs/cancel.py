"""Cancelling tasks: the row first (final, never starts again), then the running code.

The state change is the cancellation. Code already running learns of it from
a Redis pub/sub message within milliseconds (``workers/cancel.py`` listens in
every worker process) and, whatever the broker, from its lease renewal.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from jobs.dispatch import Dispatch
from jobs.execution import after_leaving_window
from jobs.transitions import move_task, move_tasks
from models import Task, TaskState
from models.settings import Settings

log = logging.getLogger(__name__)

CANCEL_CHANNEL = "taskledger:cancel"


def cancel_task(
    conn: Connection, task_id: uuid.UUID, *, reason: str, now: datetime, default_window: int
) -> tuple[Row[Any], list[Dispatch]]:
    """Cancel one task from any non-final state. Raises InvalidTransition if it is final."""
    row = move_task(
        conn,
        task_id,
        TaskState.CANCELLED,
        values={"worker_id": None},
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


def cancel_session(
    conn: Connection, session_id: str, *, reason: str, now: datetime
) -> list[Row[Any]]:
    """Cancel every unfinished task of a session in one UPDATE (seed 002's 5,000 queued)."""
    return move_tasks(
        conn,
        [Task.session_id == session_id],
        TaskState.CANCELLED,
        values={"worker_id": None},
        events=[("task_cancelled", {"reason": reason, "bulk": "session"})],
        now=now,
    )


def notify_running(settings: Settings, task_ids: Sequence[uuid.UUID]) -> None:
    """Tell worker processes to set these tasks' cancellation events (Redis brokers only)."""
    if not task_ids or not settings.uses_redis:
        return
    import redis

    try:
        client = redis.Redis.from_url(settings.resolved_broker_url)
        client.publish(CANCEL_CHANNEL, json.dumps([str(i) for i in task_ids]))
        client.close()
    except redis.RedisError:
        # The lease renewal notices the cancelled row within one heartbeat anyway.
        log.warning("could not publish cancellation; workers will see it at their next heartbeat")
