"""Beat entries of agent safety: the 03:00 retention cleanup and the approval-expiry sweep.

Kept apart from ``beat/schedule.py`` (which adds them with one line) because the
retention crontab runs in its own timezone (``TASKLEDGER_RETENTION_TIMEZONE``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

from models.settings import Settings

RETENTION = "taskledger.sweep.retention"
EXPIRE_APPROVALS = "taskledger.sweep.expire_approvals"


class ZonedCrontab(crontab):
    """A crontab read in a timezone of its own, not the app's (pickles with it for beat)."""

    def __init__(self, minute: Any = "*", hour: Any = "*", *, zone: str = "UTC") -> None:
        super().__init__(minute=minute, hour=hour)
        self.zone = zone
        self.tz = ZoneInfo(zone)  # overrides the cached app timezone for this schedule

    def __reduce__(self) -> Any:
        return (_zoned, (self._orig_minute, self._orig_hour, self.zone))


def _zoned(minute: Any, hour: Any, zone: str) -> ZonedCrontab:
    return ZonedCrontab(minute, hour, zone=zone)


def entries(settings: Settings, *, queue: str, priority: int) -> dict[str, dict[str, Any]]:
    options = {"queue": queue, "priority": priority}
    return {
        "retention-cleanup": {
            "task": RETENTION,
            "schedule": ZonedCrontab(minute=0, hour=3, zone=settings.retention_timezone),
            "options": {**options, "expires": 3600},
        },
        "approval-expiry": {
            "task": EXPIRE_APPROVALS,
            "schedule": timedelta(seconds=settings.control_interval_seconds),
            "options": {**options, "expires": max(settings.control_interval_seconds * 2, 1.0)},
        },
    }
