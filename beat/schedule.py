"""The beat schedule: a metronome. Postgres decides what is due; beat only says "look"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from models.settings import Settings

DISPATCH = "taskledger.sweep.dispatch"
RETRY = "taskledger.sweep.retry"
REAP_LEASES = "taskledger.sweep.reap_leases"


def build(settings: Settings) -> dict[str, dict[str, Any]]:
    def every(seconds: float, task: str) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": timedelta(seconds=seconds),
            # A sweep that waited longer than two intervals is stale: the next one does its work.
            "options": {"queue": settings.sweeps_queue, "expires": max(seconds * 2, 1.0)},
        }

    return {
        "dispatch-sweep": every(settings.dispatch_interval_seconds, DISPATCH),
        "retry-sweep": every(settings.retry_interval_seconds, RETRY),
        "lease-reaper": every(settings.reaper_interval_seconds, REAP_LEASES),
    }
