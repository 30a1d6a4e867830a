"""The periodic sweeps' database work. ``beat/`` runs them; each is idempotent.

Every sweep selects with ``FOR UPDATE SKIP LOCKED`` and changes rows through
guarded UPDATEs, so two beats (or a sweep racing a worker) never act on one
row twice. Each returns the messages to publish once its transaction commits.
Times come from the database's clock (``jobs.leases.db_now``), the one that
leases and backoffs are written with. A row a sweep cannot process is
quarantined (``jobs.quarantine``) and the others proceed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select

from jobs import execution
from jobs.dispatch import Dispatch, lock_ids, release_rows
from jobs.quarantine import each_isolated
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

    def requeue(chosen: Sequence[uuid.UUID]) -> list[Dispatch]:
        rows = move_tasks(
            conn,
            [Task.id.in_(list(chosen))],
            TaskState.QUEUED,
            sources=[TaskState.RETRY_WAIT],
            values={"dispatched_at": None},
            events=lambda r: [("task_retry_due", {"retries": r.retries})],
            now=now,
        )
        return release_rows(conn, rows, now=now, default_window=default_window)

    out: list[Dispatch] = []
    out += each_isolated(
        conn,
        ids,
        requeue,
        stage="retry",
        now=now,
        default_window=default_window,
        on_quarantine=out.extend,
    )
    return out


@dataclass
class Reaped:
    """What the lease reaper did: attempts failed, cancelled attempts whose slot it freed,
    hung attempts whose code should be told to stop, and what to publish."""

    failed: int = 0
    freed: int = 0
    overdue: list[uuid.UUID] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)

    @property
    def acted(self) -> bool:
        return bool(self.failed or self.freed)


def restarted_recently(conn: Connection, lease_s: float) -> bool:
    """Postgres came up less than one lease ago: every lease looks lapsed because nobody
    could renew it during the outage. Workers get one lease period to renew first."""
    started = conn.execute(select(func.pg_postmaster_start_time())).scalar_one()
    now = conn.execute(select(func.now())).scalar_one()
    return bool(now - started < timedelta(seconds=lease_s))


def _overdue(now: datetime, grace_s: float) -> Any:
    # In SQL and as a float comparison: a huge timeout must not overflow an interval.
    elapsed = func.extract("epoch", now - Task.started_at)
    return Task.started_at.is_not(None) & (elapsed > Task.timeout_s + grace_s)


def reap_expired_leases(
    conn: Connection,
    now: datetime,
    *,
    batch: int,
    grace_s: float,
    default_window: int,
    policy_for: Callable[[str], RetryPolicy],
) -> Reaped:
    """A running attempt whose lease ran out lost its worker: fail it, then the usual rules.

    An attempt past its timeout plus grace is failed as a timeout even if its lease is
    being renewed (a hung handler under the threads or solo pool, which no hard time
    limit can kill). A cancelled attempt whose lease ran out has stopped: its slot frees.
    """
    reaped = Reaped()
    overdue = _overdue(now, grace_s)
    expired = {
        row.id: row
        for row in conn.execute(
            select(*Task.__table__.c, overdue.label("overdue"))
            .where(
                Task.state == TaskState.RUNNING,
                or_(Task.lease_expires_at < now, overdue),
            )
            .order_by(Task.lease_expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
    }

    def fail(chosen: Sequence[uuid.UUID]) -> list[Dispatch]:
        out: list[Dispatch] = []
        for task_id in chosen:
            row = expired[task_id]
            attempt = execution.Attempt.from_row(row)
            if row.overdue:
                outcome = Outcome.TIMEOUT
                error = f"killed after the time limit of {row.timeout_s}s (+{grace_s}s grace)"
            else:
                outcome, error = Outcome.WORKER_LOST, f"lease expired; worker {row.worker_id} lost"
            done = execution.fail(
                conn,
                attempt,
                outcome=outcome,
                error=error,
                policy=policy_for(row.name),
                now=now,
                default_window=default_window,
            )
            out.extend(done or ())
            if row.overdue and row.lease_expires_at is not None and row.lease_expires_at >= now:
                reaped.overdue.append(task_id)
        return out

    reaped.dispatches += each_isolated(
        conn,
        list(expired),
        fail,
        stage="reaper",
        now=now,
        default_window=default_window,
        on_quarantine=reaped.dispatches.extend,
    )
    reaped.failed = len(expired)

    stopped = conn.execute(
        select(Task.id, Task.attempts)
        .where(
            Task.state == TaskState.CANCELLED,
            Task.lease_expires_at.is_not(None),
            or_(Task.lease_expires_at < now, overdue),
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    attempts = {row.id: row.attempts for row in stopped}

    def free(chosen: Sequence[uuid.UUID]) -> list[Dispatch]:
        out: list[Dispatch] = []
        for task_id in chosen:
            attempt = _attempt_stub(task_id, attempts[task_id])
            out.extend(
                execution.stopped_after_cancel(
                    conn, attempt, now=now, default_window=default_window, how="lease_lapsed"
                )
                or ()
            )
        return out

    reaped.dispatches += each_isolated(
        conn,
        list(attempts),
        free,
        stage="reaper",
        now=now,
        default_window=default_window,
        on_quarantine=reaped.dispatches.extend,
    )
    reaped.freed = len(attempts)
    return reaped


def _attempt_stub(task_id: uuid.UUID, attempt: int) -> execution.Attempt:
    """Just enough of an Attempt for ``stopped_after_cancel`` (it reads id and attempt)."""
    return execution.Attempt(
        id=task_id,
        name="",
        args=[],
        kwargs={},
        session_id=None,
        goal_id=None,
        step_index=None,
        attempt=attempt,
        retries=0,
        max_retries=0,
        timeout_s=0.0,
        meta={},
        started_at=None,
    )
