"""The periodic sweeps' database work. ``beat/`` runs them; each is idempotent.

Every sweep selects with ``FOR UPDATE SKIP LOCKED`` and changes rows through
guarded UPDATEs, so two beats (or a sweep racing a worker) never act on one
row twice. Each returns the messages to publish once its transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from jobs import execution
from jobs.dispatch import Dispatch, lock_ids, release_rows
from jobs.queries import ready_to_retry
from jobs.retry import RetryPolicy
from jobs.transitions import move_tasks
from models import Outcome, Task, TaskState


def requeue_due_retries(
    conn: Connection, now: datetime, *, batch: int, default_window: int
) -> list[Dispatch]:
    """retry_wait -> queued for every task whose backoff is over (seed 000's retry loop)."""
    due = ready_to_retry(now, batch).with_only_columns(Task.id).with_for_update(skip_locked=True)
    ids = lock_ids(conn, due)
    if not ids:
        return []
    rows = move_tasks(
        conn,
        [Task.id.in_(ids)],
        TaskState.QUEUED,
        sources=[TaskState.RETRY_WAIT],
        values={"dispatched_at": None},
        events=lambda r: [("task_retry_due", {"retries": r.retries})],
        now=now,
    )
    return release_rows(conn, rows, now=now, default_window=default_window)


def reap_expired_leases(
    conn: Connection,
    now: datetime,
    *,
    batch: int,
    grace_s: float,
    default_window: int,
    policy_for: Callable[[str], RetryPolicy],
) -> tuple[int, list[Dispatch]]:
    """A running attempt whose lease ran out lost its worker: fail it, then the usual rules."""
    expired = conn.execute(
        select(*Task.__table__.c)
        .where(Task.state == TaskState.RUNNING, Task.lease_expires_at < now)
        .order_by(Task.lease_expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    dispatches: list[Dispatch] = []
    for row in expired:
        attempt = execution.Attempt.from_row(row)
        hard_deadline = (row.started_at or now) + timedelta(seconds=row.timeout_s + grace_s)
        if hard_deadline <= now:
            outcome, error = Outcome.TIMEOUT, f"killed after the time limit of {row.timeout_s}s"
        else:
            outcome, error = Outcome.WORKER_LOST, f"lease expired; worker {row.worker_id} lost"
        out = execution.fail(
            conn,
            attempt,
            outcome=outcome,
            error=error,
            policy=policy_for(row.name),
            now=now,
            default_window=default_window,
        )
        dispatches.extend(out or ())
    return len(expired), dispatches
