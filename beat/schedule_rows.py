"""The schedule tables' rows as plain values, shared by both ways of reading them.

``beat.django_schedules`` reads and writes ``PeriodicTask`` rows through Django; the CLI's
read commands (``cli/cron_reads.py``) read the same tables in plain SQL to start fast.
Both turn a row's columns into a ``ScheduleRow`` here, so they cannot disagree.

A row's ``description`` holds taskledger's JSON: its kind (``cron`` or ``builtin``),
``since`` (slots before it are not "missed"), ``code`` (the code's schedule, config and
enabled at the last sync) and, for a cron task, ``definition``: the rest of its
definition (overlap, priority, timeout, tags, depends_on, schedule kind), so the schedule
in force can be shown without importing the code that defines it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from beat.cron import CronSchedule

if TYPE_CHECKING:
    from collections.abc import Callable

    from beat.cron import CronDefinition

CRON, BUILTIN, OTHER = "cron", "builtin", "other"


@dataclass(frozen=True, kw_only=True)
class Crontab:
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str
    timezone: str

    @classmethod
    def of(cls, row: Any) -> Crontab:
        """From a ``CrontabSchedule``, or a SQL row with its columns."""
        return cls(
            minute=row.minute,
            hour=row.hour,
            day_of_month=row.day_of_month,
            month_of_year=row.month_of_year,
            day_of_week=row.day_of_week,
            timezone=str(row.timezone),  # Django gives a ZoneInfo, SQL its name
        )

    @property
    def expr(self) -> str:
        return (
            f"{self.minute} {self.hour} {self.day_of_month} {self.month_of_year} {self.day_of_week}"
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleRow:
    name: str
    kind: str  # cron | builtin | other
    task: str
    schedule: str
    enabled: bool
    config: dict[str, Any]
    since: datetime | None
    last_run_at: datetime | None
    definition: dict[str, Any]  # a cron task's stored definition; {} for the others


def meta(description: str | None) -> dict[str, Any]:
    """taskledger's JSON in a row's description ({} for a row it did not write)."""
    try:
        data = json.loads(description or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) and "taskledger" in data else {}


def kind(data: dict[str, Any]) -> str:
    return str(data.get("taskledger", OTHER))


def since(data: dict[str, Any]) -> datetime | None:
    value = data.get("since")
    return datetime.fromisoformat(value) if value else None


def config(kwargs: str | None) -> dict[str, Any]:
    """A cron task's config: the ``config`` keyword of the row's kwargs."""
    try:
        parsed = json.loads(kwargs or "{}")
    except ValueError:
        return {}
    found = parsed.get("config", {}) if isinstance(parsed, dict) else {}
    return found if isinstance(found, dict) else {}


def interval_seconds(every: int, period: str) -> float:
    return timedelta(**{period: every}).total_seconds()


def describe(
    crontab: Crontab | None,
    seconds: float | None,
    *,
    solar: tuple[str, Any, Any] | None = None,
    clocked: datetime | None = None,
) -> str:
    """A row's schedule in one line; solar and clocked rows come only from Django's admin."""
    if crontab is not None:
        return f"{crontab.expr} ({crontab.timezone})"
    if seconds is not None:
        return f"every {seconds:g}s"
    if solar is not None:
        event, latitude, longitude = solar
        return f"solar {event} ({latitude}, {longitude})"
    if clocked is not None:
        return f"once at {clocked.isoformat()}"
    return "no schedule"


def definition_values(d: CronDefinition) -> dict[str, Any]:
    """What ``ScheduleRow.definition`` holds for a cron task."""
    return {
        "schedule_kind": d.schedule.kind,
        "overlap": d.overlap,
        "priority": d.priority,
        "timeout": d.timeout,
        "tags": list(d.tags),
        "depends_on": list(d.depends_on),
    }


def schedule_in_force(
    crontab: Crontab | None,
    seconds: float | None,
    *,
    schedule_kind: str | None,
    decide: Callable[[], bool] | None = None,
) -> CronSchedule | None:
    """The row's schedule (a runtime change wins over the code's), shaped by the
    definition's kind; None when the row has neither a crontab nor an interval."""
    if crontab is not None:
        return CronSchedule(kind="cron", expr=crontab.expr, timezone=crontab.timezone)
    if seconds is None:
        return None
    every = max(1, round(seconds))
    if schedule_kind == "dynamic":
        return CronSchedule(kind="dynamic", every_s=every, decide=decide)
    return CronSchedule(kind="every", every_s=every)
