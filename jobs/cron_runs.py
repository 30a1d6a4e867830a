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
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

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
CONSECUTIVE_FAILURES_UNHEALTHY = 3
STATS_WINDOW = 1000  # fires per cron task that stats look at
RUN_COLUMNS = tuple(CronRun.__table__.c)


class SkipReason(StrEnum):
    PREVIOUS_INSTANCE_RUNNING = "previous_instance_running"
    PREVIOUS_INSTANCE_QUEUED = "previous_instance_queued"  # overlap="queue" holds one, not a pile
    DEPENDENCY_FAILED = "dependency_failed"
    DEPENDENCY_RUNNING = "dependency_running"
    DEPENDENCY_NOT_RUN = "dependency_not_run"
    MISSED = "missed"  # no beat fired this slot in time; a later fire stood in for it


class RunStatus(StrEnum):
    WAITING = "waiting"  # overlap="queue": held until the previous run ends
    PENDING = "pending"  # task queued, not started yet
    RUNNING = "running"  # running, or waiting for a retry
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


FINISHED = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED}
)
FAILURES = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED})


def run_status(state: TaskState | None, last_outcome: str | None) -> RunStatus:
    """A fire's status from its task row (None: no task, the fire was skipped)."""
    if state is None or state is TaskState.SKIPPED:
        return RunStatus.SKIPPED
    if state is TaskState.BLOCKED:
        return RunStatus.WAITING
    if state in (TaskState.QUEUED, TaskState.PENDING_APPROVAL):
        return RunStatus.PENDING
    if state in (TaskState.RUNNING, TaskState.RETRY_WAIT):
        return RunStatus.RUNNING
    if state is TaskState.COMPLETED:
        return RunStatus.COMPLETED
    if state is TaskState.CANCELLED:
        return RunStatus.CANCELLED
    return RunStatus.TIMEOUT if last_outcome == "timeout" else RunStatus.FAILED


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


# -- history, stats, health ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    id: uuid.UUID
    name: str
    scheduled_at: datetime
    fired_at: datetime
    trigger: str
    fired_by: str
    status: RunStatus
    skipped_reason: str | None
    task_id: uuid.UUID | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    config: dict[str, Any]
    result: Any
    error: str | None
    host: str | None

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": str(self.id),
            "name": self.name,
            "status": str(self.status),
            "skipped_reason": self.skipped_reason,
            "scheduled_at": iso(self.scheduled_at),
            "fired_at": iso(self.fired_at),
            "trigger": self.trigger,
            "fired_by": self.fired_by,
            "task_id": None if self.task_id is None else str(self.task_id),
            "attempts": self.attempts,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "config": self.config,
            "result": self.result,
            "error": self.error,
            "host": self.host,
        }


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
    return [_record(row) for row in conn.execute(stmt)]


def _record(row: Any) -> RunRecord:
    status = RunStatus.SKIPPED if row.skipped_reason else run_status(row.state, row.last_outcome)
    finished = row.finished_at if status in FINISHED else None
    duration = None
    if row.first_start is not None and finished is not None:
        duration = round((finished - row.first_start).total_seconds() * 1000, 3)
    return RunRecord(
        id=row.id,
        name=row.name,
        scheduled_at=row.scheduled_at,
        fired_at=row.fired_at,
        trigger=row.trigger,
        fired_by=row.fired_by,
        status=status,
        skipped_reason=row.skipped_reason,
        task_id=row.task_id,
        attempts=row.attempts or 0,
        started_at=row.first_start,
        finished_at=finished,
        duration_ms=duration,
        config=row.config,
        result=row.result,
        error=row.last_error if status in FAILURES else None,
        host=row.host,
    )


@dataclass(frozen=True, kw_only=True)
class CronStats:
    name: str
    fires: int  # every fire recorded, skipped ones included
    runs: int  # fires that started work
    completed: int
    failed: int  # failed, timed out or cancelled
    skipped: int
    in_progress: int
    success_rate: float | None  # completed / finished runs
    mean_duration_ms: float | None
    p95_duration_ms: float | None
    last_run_at: datetime | None  # scheduled time of the latest run that started work
    last_status: str | None
    last_failure_at: datetime | None
    last_failure_error: str | None
    consecutive_failures: int

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("last_run_at", "last_failure_at"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (Postgres's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stats_from(name: str, records: Sequence[RunRecord]) -> CronStats:
    """Stats over fires given newest first (what ``history`` returns)."""
    started = [r for r in records if r.status is not RunStatus.SKIPPED]
    finished = [r for r in started if r.status in FINISHED]
    completed = [r for r in finished if r.status is RunStatus.COMPLETED]
    failures = [r for r in finished if r.status in FAILURES]
    durations = [r.duration_ms for r in finished if r.duration_ms is not None]
    consecutive = 0
    for r in finished:
        if r.status is RunStatus.COMPLETED:
            break
        consecutive += 1
    return CronStats(
        name=name,
        fires=len(records),
        runs=len(started),
        completed=len(completed),
        failed=len(failures),
        skipped=len(records) - len(started),
        in_progress=len(started) - len(finished),
        success_rate=round(len(completed) / len(finished), 4) if finished else None,
        mean_duration_ms=round(statistics.fmean(durations), 3) if durations else None,
        p95_duration_ms=None if not durations else round(percentile(durations, 0.95) or 0, 3),
        last_run_at=started[0].scheduled_at if started else None,
        last_status=str(started[0].status) if started else None,
        last_failure_at=failures[0].scheduled_at if failures else None,
        last_failure_error=failures[0].error if failures else None,
        consecutive_failures=consecutive,
    )


def stats(conn: Connection, names: Sequence[str]) -> list[CronStats]:
    return [stats_from(n, history(conn, n, limit=STATS_WINDOW)) for n in names]


def last_fire_at(conn: Connection, name: str) -> datetime | None:
    """The latest scheduled time anyone fired for this cron task."""
    return conn.execute(
        select(func.max(CronRun.scheduled_at)).where(CronRun.name == name)
    ).scalar_one_or_none()


def health(
    st: CronStats,
    *,
    enabled: bool,
    last_fire: datetime | None,
    expected_by: datetime | None,
) -> list[str]:
    """Problems of one cron task: ``missed_schedule`` when the latest slot older than the
    tolerance (``expected_by``) has no fire, ``failing`` after repeated failures."""
    problems = []
    if enabled and expected_by is not None and (last_fire is None or last_fire < expected_by):
        problems.append("missed_schedule")
    if st.consecutive_failures >= CONSECUTIVE_FAILURES_UNHEALTHY:
        problems.append("failing")
    return problems


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
