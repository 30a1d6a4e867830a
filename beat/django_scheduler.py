"""The beat scheduler: django-celery-beat's DatabaseScheduler, taught about cron tasks.

``celery -A workers.app beat`` uses it (``beat_scheduler`` in workers/app.py).
At start it validates the cron definitions and syncs them, and every entry of
``beat.schedule.build()``, into ``PeriodicTask`` rows (``beat.django_schedules``).
Built-in entries are then sent as Celery messages as usual. A cron task's
entry is not sent: beat calls ``beat.pulse.fire``, which records the fire
under its run key and creates the durable task in one transaction, so two
beats (or a beat and a pulse) start each scheduled run once.

A cron entry's schedule is aligned slots (``beat.cron.CronSchedule``): beat
wakes at each slot, and the slot, not the moment beat woke, names the fire.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import schedules

from beat import django_setup

django_setup.configure()  # before django_celery_beat imports its models

from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry  # noqa: E402

from beat import django_schedules  # noqa: E402
from beat.cron import CronDefinition, CronSchedule, get, validate_all  # noqa: E402
from beat.pulse import fire, release_waiting  # noqa: E402
from models import utcnow  # noqa: E402

log = logging.getLogger(__name__)
MAX_LOOP_SECONDS = 1.0  # runtime changes reach beat within about this long
# Sub-second sweeps make beat tick many times a second; asking Postgres "did the schedule
# change?" and "is a held cron run free to go?" at most this often keeps a tick cheap.
CHECK_EVERY_SECONDS = 0.5
UNDEFINED_RECHECK_SECONDS = 60.0  # a cron entry this beat cannot fire: how often to ask


class SlotSchedule(schedules.BaseSchedule):
    """Celery's view of a CronSchedule: due once per slot passed since the last fire."""

    def __init__(self, cron_schedule: CronSchedule, app: Any = None) -> None:
        super().__init__(app=app)
        self.cron_schedule = cron_schedule

    def remaining_estimate(self, last_run_at: datetime) -> Any:
        now = utcnow()
        return self.cron_schedule.next_slot(now) - now

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        now = utcnow()
        due = self.cron_schedule.latest_slot(now) > last_run_at
        wait = (self.cron_schedule.next_slot(now) - now).total_seconds()
        return schedules.schedstate(due, max(wait, 0.01))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotSchedule) and other.cron_schedule == self.cron_schedule

    def __hash__(self) -> int:
        return hash(self.cron_schedule)

    def __repr__(self) -> str:
        return f"<slots {self.cron_schedule.describe()}>"


class TaskledgerEntry(ModelEntry):
    """A PeriodicTask row; for a cron task, with its definition and slot schedule."""

    definition: CronDefinition | None = None
    undefined: bool = False  # a cron task whose code this beat does not import

    def __init__(self, model: Any, app: Any = None) -> None:
        super().__init__(model, app=app)
        self.definition = None
        if django_schedules.kind_of(model) != django_schedules.CRON:
            return
        try:
            self.definition = get(model.name)
        except Exception:
            self.undefined = True
            log.warning(
                "cron task %s is scheduled but not defined in this beat (TASKLEDGER_IMPORTS): "
                "this beat does not fire it; a beat or pulse that imports it does",
                model.name,
            )
            return
        self.cron_schedule = django_schedules.schedule_of(model, self.definition)
        self.schedule = SlotSchedule(self.cron_schedule, app=self.app)
        self.config = django_schedules.config_of(model)
        self.since = django_schedules.since_of(model)

    def is_due(self) -> Any:
        # Sent as a plain message it would reach the workers around the ledger, with no
        # fire recorded: never due here, asked again now and then (a reload rebuilds it).
        if self.undefined:
            return schedules.schedstate(is_due=False, next=UNDEFINED_RECHECK_SECONDS)
        return super().is_due()


class TaskledgerScheduler(DatabaseScheduler):
    Entry = TaskledgerEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_interval: float = min(float(self.max_interval), MAX_LOOP_SECONDS)

    def setup_schedule(self) -> None:
        # Not DatabaseScheduler's update_from_dict(beat_schedule): it would overwrite
        # runtime changes (a disabled sweep would come back on every restart).
        django_setup.migrate()  # plain `celery beat` on a database `db upgrade` predates
        defs = validate_all(extra_names=list(self.app.conf.beat_schedule))
        django_schedules.sync(self.app.conf.beat_schedule, defs)
        self.install_default_entries(self.schedule)

    def apply_async(
        self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        definition = getattr(entry, "definition", None)
        if definition is None:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        if advance:
            entry = self.reserve(entry)
        return fire(
            definition,
            schedule=entry.cron_schedule,
            config=entry.config,
            since=entry.since,
            trigger="beat",
        )

    _next_check = 0.0

    def schedule_changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY_SECONDS
        try:
            release_waiting(self.app)
        except Exception:
            log.warning("releasing held cron runs failed; next check tries again", exc_info=True)
        return bool(super().schedule_changed())
