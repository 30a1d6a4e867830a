"""Cron fires in the ledger: the run key, overlap rules, dependencies, history and stats.

Every fire of a cron task, whoever fires it (either of two beats, a pulse, the
CLI), goes through ``fire`` in one transaction:

1. an advisory lock on the cron task's name serialises fires of that task
   across every host (the decision below reads, then writes);
2. the fire's row is inserted under the run key ``(name, scheduled_at)``
   (unique index, ``ON CONFLICT DO NOTHING``): the second fire of the same
   slot inserts nothing and stops there, so a fire starts work at most once;
3. a previous run whose ledger task is still queued, running or waiting for a
   retry makes this fire ``skipped`` (``previous_instance_running``) or, with
   ``overlap="queue"``, a task held ``blocked`` until the previous one ends;
4. otherwise the durable task row is created and published after commit.

"Still running" is the task row's state, which the lease decides: a worker
SIGKILLed mid-run keeps its row ``running`` until the lease reaper fails it.
A run's status is read from its task, so history never disagrees with the ledger.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs.cron_records import (
    FAILURES,
    STATS_WINDOW,
    CronStats,
    RunRecord,
    RunStatus,
    record,
    run_status,
    stats_from,
)
from jobs.dispatch import Dispatch, release
from jobs.enqueue import TaskSpec, insert
from jobs.transitions import move_task
from models import CronRun, PulseRun, Task, TaskEvent, TaskState

# A run whose task is in one of these is the "previous instance" a new fire finds.
ACTIVE_STATES = (
    TaskState.QUEUED,
    TaskState.RUNNING,
    TaskState.RETRY_WAIT,
    TaskState.PENDING_APPROVAL,
)
RUN_COLUMNS = tuple(CronRun.__table__.c)


class SkipReason(StrEnum):
    PREVIOUS_INSTANCE_RUNNING = "previous_instance_running"
    PREVIOUS_INSTANCE_QUEUED = "previous_instance_queued"  # overlap="queue" holds one, not a pile
    DEPENDENCY_FAILED = "dependency_failed"
    DEPENDENCY_RUNNING = "dependency_running"
    DEPENDENCY_NOT_RUN = "dependency_not_run"
    MISSED = "missed"  # no beat fired this slot in time; a later fire stood in for it


@dataclass(frozen=True, kw_only=True)
class FireRequest:
    name: str
    scheduled_at: datetime  # with ``name``, the run key
    overlap: str  # "skip" | "queue"
    depends_on: tuple[str, ...] = ()
    config: dict[str, Any]
    trigger: str  # beat | pulse | manual
    fired_by: str
    spec: TaskSpec  # the durable task to create if the fire starts work
    # Given the latest slot fired so far, the earlier slots nobody fired (recorded as skipped).
    missed: Callable[[datetime | None], Sequence[datetime]] = lambda last: ()


@dataclass(frozen=True, kw_only=True)
class FireResult:
    name: str
    scheduled_at: datetime
    status: str  # started | waiting | skipped | duplicate
    reason: str | None = None
    task_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scheduled_at": self.scheduled_at.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "task_id": None if self.task_id is None else str(self.task_id),
        }


def lock_cron(conn: Connection, name: str) -> None:
    """Serialise fires and promotions of one cron task across all hosts (until commit)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("tl-cron:" + name))))


def fire(
    conn: Connection, request: FireRequest, *, now: datetime, default_window: int
) -> tuple[FireResult, list[Dispatch]]:
    """Record one fire and start, hold or skip its run. Publish the dispatches after commit."""
    lock_cron(conn, request.name)
    dispatches = promote(conn, now=now, default_window=default_window, names=[request.name])
    last = last_fire_at(conn, request.name)
    run_id = _insert_run(conn, request, request.scheduled_at, now)
    result = FireResult(name=request.name, scheduled_at=request.scheduled_at, status="duplicate")
    if run_id is None:
        return result, dispatches  # another beat or pulse fired this slot already
    for slot in request.missed(last):
        _insert_run(conn, request, slot, now, reason=SkipReason.MISSED)
    states = _run_states(conn, request.name)
    wait = False
    reason: str | None = None
    if TaskState.BLOCKED in states:
        reason = SkipReason.PREVIOUS_INSTANCE_QUEUED
    elif states & set(ACTIVE_STATES):
        if request.overlap == "queue":
            wait = True
        else:
            reason = SkipReason.PREVIOUS_INSTANCE_RUNNING
    reason = reason or dependency_problem(conn, request.depends_on)
    if reason is not None:
        conn.execute(update(CronRun).where(CronRun.id == run_id).values(skipped_reason=reason))
        return dataclasses.replace(result, status="skipped", reason=reason), dispatches
    spec = dataclasses.replace(request.spec, state=TaskState.BLOCKED) if wait else request.spec
    dispatches += insert(conn, [spec], now, default_window=default_window)
    conn.execute(update(CronRun).where(CronRun.id == run_id).values(task_id=spec.id))
    status = "waiting" if wait else "started"
    return dataclasses.replace(result, status=status, task_id=spec.id), dispatches


def _insert_run(
    conn: Connection,
    request: FireRequest,
    slot: datetime,
    now: datetime,
    *,
    reason: str | None = None,
) -> uuid.UUID | None:
    stmt = (
        pg_insert(CronRun)
        .values(
            id=uuid.uuid4(),
            name=request.name,
            scheduled_at=slot,
            trigger=request.trigger,
            fired_by=request.fired_by,
            fired_at=now,
            skipped_reason=reason,
            config=request.config,
        )
        .on_conflict_do_nothing(index_elements=["name", "scheduled_at"])
        .returning(CronRun.id)
    )
    return conn.execute(stmt).scalar_one_or_none()


def _run_states(conn: Connection, name: str) -> set[TaskState]:
    """States of this cron task's unfinished runs."""
    stmt = (
        select(Task.state)
        .join(CronRun, CronRun.task_id == Task.id)
        .where(CronRun.name == name, Task.state.in_([*ACTIVE_STATES, TaskState.BLOCKED]))
        .distinct()
    )
    return set(conn.execute(stmt).scalars())


def dependency_problem(conn: Connection, depends_on: Sequence[str]) -> str | None:
    """Why the dependencies' latest runs keep this fire from starting, or None."""
    for dep in depends_on:
        row = conn.execute(
            select(Task.state, Task.last_outcome)
            .join(CronRun, CronRun.task_id == Task.id)
            .where(CronRun.name == dep)
            .order_by(CronRun.scheduled_at.desc())
            .limit(1)
        ).one_or_none()
        if row is None:
            return SkipReason.DEPENDENCY_NOT_RUN
        status = run_status(row.state, row.last_outcome)
        if status in FAILURES:
            return SkipReason.DEPENDENCY_FAILED
        if status is not RunStatus.COMPLETED:
            return SkipReason.DEPENDENCY_RUNNING
    return None


def promote(
    conn: Connection,
    *,
    now: datetime,
    default_window: int,
    names: Sequence[str] | None = None,
) -> list[Dispatch]:
    """overlap="queue": release each held run whose previous run has ended."""
    blocked = (
        select(CronRun.name, CronRun.task_id)
        .join(Task, Task.id == CronRun.task_id)
        .where(Task.state == TaskState.BLOCKED)
        .order_by(CronRun.scheduled_at)
    )
    if names is not None:
        blocked = blocked.where(CronRun.name.in_(list(names)))
    first: dict[str, uuid.UUID] = {}
    for name, task_id in conn.execute(blocked):
        if task_id is not None:
            first.setdefault(name, task_id)
    released: list[uuid.UUID] = []
    for name, task_id in sorted(first.items()):
        lock_cron(conn, name)
        if _run_states(conn, name) & set(ACTIVE_STATES):
            continue
        moved = move_task(
            conn,
            task_id,
            TaskState.QUEUED,
            sources=[TaskState.BLOCKED],
            events=[("task_unblocked", {"reason": "previous cron run ended", "cron": name})],
            now=now,
            strict=False,
        )
        if moved is not None:
            released.append(task_id)
    if not released:
        return []
    return release(
        conn, sessions=(), sessionless_ids=released, now=now, default_window=default_window
    )


def has_waiting(conn: Connection) -> bool:
    stmt = (
        select(CronRun.id)
        .join(Task, Task.id == CronRun.task_id)
        .where(Task.state == TaskState.BLOCKED)
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


# -- history and stats (records, stats and health: jobs.cron_records) --------------------


def history(conn: Connection, name: str | None = None, *, limit: int = 50) -> list[RunRecord]:
    """Fires newest first (of one cron task, or all), each with its task's outcome."""
    host = (
        select(TaskEvent.payload["worker"].astext)
        .where(TaskEvent.task_id == CronRun.task_id, TaskEvent.event_type == "task_started")
        .order_by(TaskEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    first_start = (
        select(func.min(TaskEvent.created_at))
        .where(TaskEvent.task_id == CronRun.task_id, TaskEvent.event_type == "task_started")
        .scalar_subquery()
    )
    stmt = (
        select(
            *RUN_COLUMNS,
            Task.state,
            Task.last_outcome,
            Task.attempts,
            Task.finished_at,
            Task.result,
            Task.last_error,
            first_start.label("first_start"),
            host.label("host"),
        )
        .outerjoin(Task, Task.id == CronRun.task_id)
        .order_by(CronRun.scheduled_at.desc(), CronRun.fired_at.desc())
        .limit(limit)
    )
    if name is not None:
        stmt = stmt.where(CronRun.name == name)
    return [record(row) for row in conn.execute(stmt)]


def stats(conn: Connection, names: Sequence[str]) -> list[CronStats]:
    return [stats_from(n, history(conn, n, limit=STATS_WINDOW)) for n in names]


def last_fire_at(conn: Connection, name: str) -> datetime | None:
    """The latest scheduled time anyone fired for this cron task."""
    return conn.execute(
        select(func.max(CronRun.scheduled_at)).where(CronRun.name == name)
    ).scalar_one_or_none()


# -- pulses -------------------------------------------------------------------------------


def record_pulse(
    conn: Connection,
    *,
    host: str,
    started_at: datetime,
    finished_at: datetime,
    outcome: dict[str, Any],
) -> None:
    conn.execute(
        pg_insert(PulseRun).values(
            host=host, started_at=started_at, finished_at=finished_at, outcome=outcome
        )
    )


def last_pulse(conn: Connection) -> Any:
    """The latest pulse's row (host, started_at, finished_at, outcome), or None."""
    return conn.execute(
        select(*PulseRun.__table__.c).order_by(PulseRun.id.desc()).limit(1)
    ).one_or_none()
