"""Firing cron tasks: from beat's scheduler, from ``taskledger pulse`` and by hand.

``fire`` is the one path every fire takes: it computes the slot (the
scheduled time), builds the durable task, and lets ``jobs.cron_runs.fire``
decide in one transaction under the run key. ``pulse`` fires every enabled
cron task whose latest slot is due and exits (serverless: no beat, no side
tasks); running it twice, or five times at once, for the same minute starts
each due run once, because the run key admits one fire per slot.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from beat.cron import MAX_CATCHUP_SLOTS, CronDefinition, CronSchedule
from jobs import cron_runs
from jobs.durable import publish_quietly
from models import utcnow
from models.db import transaction
from models.settings import get_settings

log = logging.getLogger(__name__)


def fired_by() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fire(
    definition: CronDefinition,
    *,
    schedule: CronSchedule,
    config: dict[str, Any],
    since: datetime | None,
    trigger: str,
    now: datetime | None = None,
) -> cron_runs.FireResult | None:
    """Fire the latest slot of ``schedule`` (``trigger="manual"``: now, exactly).

    Returns None when a dynamic schedule's function says "not now".
    """
    settings = get_settings()
    now = now or utcnow()
    manual = trigger == "manual"
    slot = now if manual else schedule.latest_slot(now)
    if schedule.kind == "dynamic" and not manual:
        try:
            if not schedule.decide or not schedule.decide():
                return None
        except Exception:
            log.warning("schedule function of cron task %s raised", definition.name, exc_info=True)
            return None
    floor = slot - timedelta(seconds=settings.cron_tolerance_seconds)

    def missed(last: datetime | None) -> list[datetime]:
        if manual or schedule.kind == "dynamic":
            return []
        after = max(t for t in (last, since, floor) if t is not None)
        return schedule.slots_between(after, slot, limit=MAX_CATCHUP_SLOTS)

    request = cron_runs.FireRequest(
        name=definition.name,
        scheduled_at=slot,
        overlap=definition.overlap,
        depends_on=definition.depends_on,
        config=config,
        trigger=trigger,
        fired_by=fired_by(),
        spec=definition.spec(config, scheduled_at=slot, now=now),
        missed=missed,
    )
    with transaction() as conn:
        result, dispatches = cron_runs.fire(
            conn, request, now=now, default_window=settings.session_concurrency
        )
    publish_quietly(definition.task.app, dispatches, settings)
    if result.status != "duplicate":
        log.info(
            "cron task %s fired for %s: %s%s",
            definition.name,
            slot.isoformat(),
            result.status,
            f" ({result.reason})" if result.reason else "",
        )
    return result


def release_waiting(app: Any) -> int:
    """overlap="queue": start held runs whose previous run has ended."""
    settings = get_settings()
    with transaction() as conn:
        if not cron_runs.has_waiting(conn):
            return 0
        dispatches = cron_runs.promote(
            conn, now=utcnow(), default_window=settings.session_concurrency
        )
    publish_quietly(app, dispatches, settings)
    return len(dispatches)


@dataclass
class PulseReport:
    started_at: datetime
    finished_at: datetime | None = None
    ran: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    already_fired: list[dict[str, Any]] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "ran": self.ran,
            "waiting": self.waiting,
            "skipped": self.skipped,
            "already_fired": self.already_fired,
            "not_due": self.not_due,
        }


def pulse(now: datetime | None = None) -> PulseReport:
    """Fire every due cron task once, record the pulse, and return what happened."""
    from beat import django_schedules
    from beat.cron import validate_all

    settings = get_settings()
    now = now or utcnow()
    report = PulseReport(started_at=now)
    defs = validate_all()
    django_schedules.sync(None, defs)  # serverless: the pulse may be the only one to sync
    for model, definition in sorted(django_schedules.enabled_crons(), key=lambda p: p[1].name):
        schedule = django_schedules.schedule_of(model, definition)
        since = django_schedules.since_of(model)
        slot = schedule.latest_slot(now)
        # A pulse may come late (its own trigger is outside our control): the latest slot
        # is due within the tolerance, once, whoever fires it first.
        if slot < now - timedelta(seconds=settings.cron_tolerance_seconds):
            report.not_due.append(definition.name)
            continue
        result = fire(
            definition,
            schedule=schedule,
            config=django_schedules.config_of(model),
            since=since,
            trigger="pulse",
            now=now,
        )
        if result is None:
            report.not_due.append(definition.name)
            continue
        bucket = {
            "started": report.ran,
            "waiting": report.waiting,
            "skipped": report.skipped,
            "duplicate": report.already_fired,
        }[result.status]
        bucket.append(result.as_json())
    for definition in defs.values():
        release_waiting(definition.task.app)
        break
    report.finished_at = utcnow()
    with transaction() as conn:
        cron_runs.record_pulse(
            conn,
            host=fired_by(),
            started_at=report.started_at,
            finished_at=report.finished_at,
            outcome=report.as_json(),
        )
    return report


def run_now(name: str) -> cron_runs.FireResult:
    """``taskledger cron run NAME``: fire now, through the overlap and dependency rules."""
    from beat import django_schedules
    from beat.cron import get, validate_all

    validate_all()
    definition = get(name)
    django_schedules.sync(None, {name: definition})
    model = django_schedules.cron_model(name)
    result = fire(
        definition,
        schedule=django_schedules.schedule_of(model, definition),
        config=django_schedules.config_of(model),
        since=None,
        trigger="manual",
    )
    assert result is not None
    return result
