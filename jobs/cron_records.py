"""A cron task's fires as records, and the stats and health read from them.

Plain data and arithmetic, no SQLAlchemy: ``jobs.cron_runs`` builds these from the
ORM, the CLI's read commands (``cli/cron_reads.py``) from plain SQL, and both get the
same records, stats and health from the same code.
"""

from __future__ import annotations

import dataclasses
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from models.states import TaskState

CONSECUTIVE_FAILURES_UNHEALTHY = 3
STATS_WINDOW = 1000  # fires per cron task that stats look at


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


def run_status(state: TaskState | str | None, last_outcome: str | None) -> RunStatus:
    """A fire's status from its task row (None: no task, the fire was skipped)."""
    if state is None:
        return RunStatus.SKIPPED
    state = TaskState(state)
    if state is TaskState.SKIPPED:
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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


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
        return {
            "id": str(self.id),
            "name": self.name,
            "status": str(self.status),
            "skipped_reason": self.skipped_reason,
            "scheduled_at": _iso(self.scheduled_at),
            "fired_at": _iso(self.fired_at),
            "trigger": self.trigger,
            "fired_by": self.fired_by,
            "task_id": None if self.task_id is None else str(self.task_id),
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "config": self.config,
            "result": self.result,
            "error": self.error,
            "host": self.host,
        }


def record(row: Any) -> RunRecord:
    """A fire from a row of ``cron_runs`` joined with its task: ``state``, ``last_outcome``,
    ``attempts``, ``finished_at``, ``result``, ``last_error``, ``first_start`` (the first
    task_started event) and ``host`` (the worker of the latest one)."""
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
            out[key] = _iso(out[key])
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
