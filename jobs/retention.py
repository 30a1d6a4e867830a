"""Retention (seed 002 11.6, the design card): delete finished work older than N days.

Completed, failed and cancelled tasks whose ``finished_at`` is older than the cutoff
go, with their events (``ON DELETE CASCADE``). Never ``pending_approval``, never
unfinished work. Goals stay consistent: a goal's steps are deleted only with the
goal itself, once the goal is final and every one of its steps finished before the
cutoff; a goal still in progress keeps all its history.

Each batch (default 1,000 rows) is its own short transaction that locks only the
rows it deletes (``FOR UPDATE SKIP LOCKED``), so workers keep running while a large
table is cleaned. ``dry_run`` counts exactly what a real run would delete.

Cron history goes by the same cutoff: a fire's ``cron_runs`` row leaves with its task
(``ON DELETE CASCADE``), a skipped fire (no task) and a pulse's record by their own dates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, select

from jobs import errors
from models import Goal, GoalStatus, Task, TaskState, utcnow
from models.cron_run import CronRun, PulseRun
from models.db import transaction
from models.settings import get_settings

log = logging.getLogger("taskledger.retention")

DELETABLE = (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)
FINAL_GOALS = (GoalStatus.COMPLETED, GoalStatus.FAILED, GoalStatus.CANCELLED)


def _old_standalone(cutoff: datetime) -> list[Any]:
    return [Task.goal_id.is_(None), Task.state.in_(DELETABLE), Task.finished_at < cutoff]


def _old_goals(cutoff: datetime) -> list[Any]:
    """Final goals none of whose steps is unfinished, pending or finished after the cutoff."""
    step = Task.__table__.alias("step")
    keeps = exists(
        select(step.c.id).where(
            step.c.goal_id == Goal.id,
            ~and_(step.c.state.in_(DELETABLE), step.c.finished_at < cutoff),
        )
    )
    return [Goal.status.in_(FINAL_GOALS), Goal.updated_at < cutoff, ~keeps]


def _count(conn: Connection, cutoff: datetime) -> dict[str, int]:
    counts = {state.value: 0 for state in DELETABLE}
    for state, n in conn.execute(
        select(Task.state, func.count()).where(*_old_standalone(cutoff)).group_by(Task.state)
    ):
        counts[TaskState(state).value] += int(n)
    goal_ids = select(Goal.id).where(*_old_goals(cutoff))
    for state, n in conn.execute(
        select(Task.state, func.count()).where(Task.goal_id.in_(goal_ids)).group_by(Task.state)
    ):
        counts[TaskState(state).value] += int(n)
    return counts


def cleanup(
    *,
    days: int,
    dry_run: bool,
    batch: int = 1000,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Delete (or with ``dry_run`` count) finished tasks older than ``days``, by state."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise errors.InvalidOption(f"days must be an integer >= 0; got {days!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise errors.InvalidOption(f"batch must be an integer >= 1; got {batch!r}")
    cutoff = (now or utcnow()) - timedelta(days=days)
    if dry_run:
        with transaction() as conn:
            return _count(conn, cutoff)
    counts = {state.value: 0 for state in DELETABLE}
    started = time.monotonic()
    goals = 0
    while True:  # standalone tasks, oldest first, one short transaction per batch
        with transaction() as conn:
            ids = (
                select(Task.id)
                .where(*_old_standalone(cutoff))
                .order_by(Task.finished_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            gone = (
                conn.execute(
                    delete(Task)
                    .where(Task.id.in_(list(conn.execute(ids).scalars())))
                    .returning(Task.state)
                )
                .scalars()
                .all()
            )
        for state in gone:
            counts[TaskState(state).value] += 1
        if progress:
            progress(len(gone))
        if len(gone) < batch:
            break
    while True:  # whole goals, a few at a time (each takes its steps and events along)
        with transaction() as conn:
            goal_ids = list(
                conn.execute(
                    select(Goal.id)
                    .where(*_old_goals(cutoff))
                    .limit(max(1, batch // 20))
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not goal_ids:
                break
            for state, n in conn.execute(
                select(Task.state, func.count())
                .where(Task.goal_id.in_(goal_ids))
                .group_by(Task.state)
            ):
                counts[TaskState(state).value] += int(n)
            conn.execute(delete(Goal).where(Goal.id.in_(goal_ids)))
            goals += len(goal_ids)
    history = _prune_cron_history(cutoff, batch)
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    log.info(
        "retention deleted %d task(s) older than %d days (%s), %d goal(s) and %d cron "
        "history row(s) in %.1fs",
        total,
        days,
        ", ".join(f"{k}={v}" for k, v in counts.items()),
        goals,
        history,
        elapsed,
        extra={"action": "retention_cleanup", "counts": counts, "goals": goals},
    )
    return counts


def _prune_cron_history(cutoff: datetime, batch: int) -> int:
    """Skipped cron fires (they have no task to cascade from) and pulse records."""
    deleted = 0
    for table, old in (
        (CronRun, and_(CronRun.task_id.is_(None), CronRun.fired_at < cutoff)),
        (PulseRun, PulseRun.finished_at < cutoff),
    ):
        while True:
            with transaction() as conn:
                ids = select(table.id).where(old).limit(batch).with_for_update(skip_locked=True)
                gone = conn.execute(delete(table).where(table.id.in_(ids.scalar_subquery())))
            deleted += gone.rowcount
            if gone.rowcount < batch:
                break
    return deleted


def cleanup_configured() -> dict[str, int]:
    """The beat entry's run: TASKLEDGER_RETENTION_DAYS, TASKLEDGER_RETENTION_BATCH."""
    settings = get_settings()
    return cleanup(days=settings.retention_days, dry_run=False, batch=settings.retention_batch)
