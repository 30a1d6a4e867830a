"""The beat schedule: a metronome. Postgres decides what is due; beat only says "look".

Sweeps travel on the default queue unless ``TASKLEDGER_SWEEPS_QUEUE`` names
a queue of their own, so plain ``celery -A workers.app worker`` plus
``celery -A workers.app beat`` is a complete deployment. They go at broker
priority 0, which no task message uses (``jobs.dispatch.broker_priority``
maps tasks onto 1-9), so a waiting sweep is taken before any waiting work.
A sweep still needs a free pool slot: where long tasks can fill every slot
of every worker, give the sweeps a worker of their own (a dedicated queue).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from beat import safety_schedule
from models.settings import Settings

DISPATCH = "taskledger.sweep.dispatch"
RETRY = "taskledger.sweep.retry"
REAP_LEASES = "taskledger.sweep.reap_leases"
TASK_LISTS = "taskledger.sweep.task_lists"  # jobs/tasklists: stop grace, stalled lists
SWEEP_PATTERN = "taskledger.sweep.*"
SWEEP_BROKER_PRIORITY = 0  # Redis takes 0 first


def routes(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery ``task_routes`` for the sweeps (also when called by hand, not by beat)."""
    return {
        SWEEP_PATTERN: {
            "queue": settings.resolved_sweeps_queue,
            "priority": SWEEP_BROKER_PRIORITY,
        }
    }


def build(settings: Settings) -> dict[str, dict[str, Any]]:
    def every(seconds: float, task: str) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": timedelta(seconds=seconds),
            "options": {
                "queue": settings.resolved_sweeps_queue,
                "priority": SWEEP_BROKER_PRIORITY,
                # A sweep that waited longer than two intervals is stale: the next one does
                # its work. Ticks therefore never pile up behind a busy pool.
                "expires": max(seconds * 2, 1.0),
            },
        }

    return {
        "dispatch-sweep": every(settings.dispatch_interval_seconds, DISPATCH),
        "retry-sweep": every(settings.retry_interval_seconds, RETRY),
        "lease-reaper": every(settings.reaper_interval_seconds, REAP_LEASES),
        "task-list-sweep": every(settings.dispatch_interval_seconds, TASK_LISTS),
        # retention at 03:00 (TASKLEDGER_RETENTION_TIMEZONE) and approval expiry (issue 6)
        **safety_schedule.entries(
            settings, queue=settings.resolved_sweeps_queue, priority=SWEEP_BROKER_PRIORITY
        ),
    }
