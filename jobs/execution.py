"""One attempt's life in the database: claim it, then record how it ended.

The claim is a conditional UPDATE from ``queued`` to ``running`` (invariant
2): a duplicate or stale message claims nothing. Every later write of the
attempt is fenced by the attempt number, so a worker that lost its lease
cannot overwrite the attempt that replaced it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, func, select, update

from jobs import breaker, holds
from jobs.dispatch import Dispatch, release
from jobs.retry import RetryPolicy, decide
from jobs.tasklists import hook as tasklist_hook
from jobs.transitions import (
    claim_in_one_statement,
    complete_in_one_statement,
    move_task,
    write_events,
)
from models import Outcome, Task, TaskState, Verification

ERROR_TEXT_LIMIT = 4000


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """A claimed task, as the worker running it sees it."""

    id: uuid.UUID
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    session_id: str | None
    goal_id: uuid.UUID | None
    step_index: int | None
    attempt: int
    retries: int
    max_retries: int
    timeout_s: float
    meta: dict[str, Any]
    started_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Attempt:
        return cls(
            id=row.id,
            name=row.name,
            args=list(row.args or []),
            kwargs=dict(row.kwargs or {}),
            session_id=row.session_id,
            goal_id=row.goal_id,
            step_index=row.step_index,
            attempt=row.attempts,
            retries=row.retries,
            max_retries=row.max_retries,
            timeout_s=row.timeout_s,
            meta=dict(row.metadata or {}),
            started_at=row.started_at,
        )


def claim(
    conn: Connection, task_id: uuid.UUID, *, worker_id: str, lease_s: float, now: datetime
) -> Attempt | None:
    """queued -> running, or None when the row is not claimable (duplicate, stale, cancelled)."""
    row = claim_in_one_statement(conn, task_id, worker_id=worker_id, now=now, lease_s=lease_s)
    return None if row is None else Attempt.from_row(row)


def complete(
    conn: Connection,
    attempt: Attempt,
    *,
    result: Any,
    verification: Verification,
    now: datetime,
    default_window: int,
) -> list[Dispatch] | None:
    """running -> completed. None when this attempt no longer owns the row."""
    payload: dict[str, Any] = {"attempt": attempt.attempt, "verification": str(verification)}
    if attempt.started_at is not None:
        payload["duration_ms"] = round((now - attempt.started_at).total_seconds() * 1000, 3)
    done = complete_in_one_statement(
        conn,
        attempt.id,
        attempt=attempt.attempt,
        result_json=json.dumps(result),
        verification=str(verification),
        payload_json=json.dumps(payload),
        now=now,
    )
    if done:
        return _after_finish(conn, attempt, now, default_window)
    return stopped_after_cancel(conn, attempt, now=now, default_window=default_window)


def fail(
    conn: Connection,
    attempt: Attempt,
    *,
    outcome: Outcome,
    error: str,
    policy: RetryPolicy,
    now: datetime,
    default_window: int,
    verification: Verification | None = None,
) -> list[Dispatch] | None:
    """running -> retry_wait (retries left) or failed (exhausted, permanent).

    The backoff is counted from the database's clock, the one the retry sweep reads.
    """
    error = error[:ERROR_TEXT_LIMIT]
    db_now = conn.execute(select(func.now())).scalar_one()
    failed_event = (
        "task_failed",
        {"attempt": attempt.attempt, "outcome": str(outcome), "error": error},
    )
    values: dict[str, Any] = {"last_error": error, "last_outcome": str(outcome), "worker_id": None}
    if verification is not None:
        values["verification_status"] = verification
    retry = decide(
        policy,
        retries=attempt.retries,
        max_retries=attempt.max_retries,
        outcome=outcome,
        now=db_now,
    )
    fence = [Task.attempts == attempt.attempt]
    if retry is not None:
        row = move_task(
            conn,
            attempt.id,
            TaskState.RETRY_WAIT,
            sources=[TaskState.RUNNING],
            guard=fence,
            values={
                **values,
                "retries": attempt.retries + 1,
                "backoff_until": retry.backoff_until,
                "lease_expires_at": None,
                "dispatched_at": None,
            },
            events=[
                failed_event,
                (
                    "task_scheduled_for_retry",
                    {
                        "retries": attempt.retries + 1,
                        "max_retries": attempt.max_retries,
                        "delay_s": round(retry.delay_s, 3),
                        "backoff_until": retry.backoff_until.isoformat(),
                    },
                ),
            ],
            now=now,
            strict=False,
        )
    else:
        final_events = [failed_event]
        if outcome is not Outcome.PERMANENT:
            final_events.append(
                (
                    "task_exhausted_retries",
                    {"retries": attempt.retries, "max_retries": attempt.max_retries},
                )
            )
        row = move_task(
            conn,
            attempt.id,
            TaskState.FAILED,
            sources=[TaskState.RUNNING],
            guard=fence,
            values=values,
            events=final_events,
            now=now,
            strict=False,
        )
    if row is None:
        return stopped_after_cancel(conn, attempt, now=now, default_window=default_window)
    breaker.record_failure(conn, attempt.name, task_id=attempt.id, now=now)  # may open it
    return _after_finish(conn, attempt, now, default_window)


def stopped_after_cancel(
    conn: Connection,
    attempt: Attempt,
    *,
    now: datetime,
    default_window: int,
    how: str = "returned",
) -> list[Dispatch] | None:
    """The code of a cancelled attempt has stopped: give its session slot back.

    A cancel keeps a running attempt's lease (so it still counts in its session's
    window) until the code is really gone: it returned (here, from the worker), its
    process was terminated (``workers/cancel.py``), or the reaper saw the lease lapse.
    None when this attempt holds nothing (the row moved on: reaped, or never ours).
    """
    row = conn.execute(
        update(Task)
        .where(
            Task.id == attempt.id,
            Task.state == TaskState.CANCELLED,
            Task.attempts == attempt.attempt,
            Task.lease_expires_at.is_not(None),
        )
        .values(lease_expires_at=None, worker_id=None)
        .returning(Task.id, Task.goal_id, Task.session_id)
    ).one_or_none()
    if row is None:
        return None
    write_events(
        conn,
        [cast(Row[Any], row)],
        [("task_stopped", {"attempt": attempt.attempt, "how": how})],
        now,
    )
    return after_leaving_window(
        conn, session_id=row.session_id, goal_id=row.goal_id, now=now, default_window=default_window
    )


def _after_finish(
    conn: Connection, attempt: Attempt, now: datetime, default_window: int
) -> list[Dispatch]:
    return after_leaving_window(
        conn,
        session_id=attempt.session_id,
        goal_id=attempt.goal_id,
        now=now,
        default_window=default_window,
    )


def after_leaving_window(
    conn: Connection,
    *,
    session_id: str | None,
    goal_id: uuid.UUID | None,
    now: datetime,
    default_window: int,
) -> list[Dispatch]:
    """A task left its session's window (finished or cancelled): move its goal on and
    reserve what may run next."""
    # A task list's goal moves by its dependency graph, any other goal by step order.
    queued = tasklist_hook.advance_goal(conn, goal_id, now) if goal_id is not None else []
    return release(
        conn,
        sessions={session_id, *(row.session_id for row in queued)},
        sessionless_ids=[row.id for row in queued if row.session_id is None],
        now=now,
        default_window=default_window,
    )


def dequeue(
    conn: Connection,
    *,
    worker_id: str,
    lease_s: float,
    now: datetime,
    session_id: str | None = None,
    name: str | None = None,
) -> Attempt | None:
    """Seed 004's atomic dequeue, for callers that pull instead of consuming messages.

    Takes the most urgent due task (optionally of one session or task name);
    concurrent callers skip each other's locked rows, and the claim is the
    same conditional UPDATE the workers use, so no task is handed out twice.
    """
    stmt = (
        select(Task.id)
        .where(Task.state == TaskState.QUEUED, Task.scheduled_for <= now, *holds.runnable(now))
        .order_by(Task.priority.desc(), Task.created_at, Task.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if session_id is not None:
        stmt = stmt.where(Task.session_id == session_id)
    if name is not None:
        stmt = stmt.where(Task.name == name)
    task_id = conn.execute(stmt).scalar_one_or_none()
    if task_id is None:
        return None
    return claim(conn, task_id, worker_id=worker_id, lease_s=lease_s, now=now)
