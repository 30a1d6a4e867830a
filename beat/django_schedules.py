"""Schedules as django-celery-beat rows: sync at start, change at runtime.

Every cron task and every built-in beat entry (the sweeps, the 03:00
retention: whatever ``beat.schedule.build()`` returns) is a ``PeriodicTask``
row, so ``celery beat`` with the DatabaseScheduler fires them and a change
made here, from the CLI or from Django's admin, reaches every running beat at
its next tick (``PeriodicTasks.last_update`` tells them).

Sync never clobbers a runtime change: for a cron task it writes a field
(schedule, config, enabled) only when the code's value for that field changed
since the last sync (the code's values are remembered in the row's
``description``). Built-in entries follow the settings, except ``enabled``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from beat import django_setup, schedule_rows
from beat.cron import CronDefinition, CronDefinitionError, CronSchedule, check_cron, get
from beat.schedule_rows import BUILTIN, CRON, Crontab, ScheduleRow

django_setup.configure()

from django.db import transaction  # noqa: E402
from django_celery_beat.models import (  # noqa: E402
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

from models import utcnow  # noqa: E402

log = logging.getLogger(__name__)
SYNC_LOCK = 0x7A5C_5EC5


class ScheduleError(ValueError):
    """A schedule change was refused; nothing was written."""


def meta(model: PeriodicTask) -> dict[str, Any]:
    return schedule_rows.meta(model.description)


def kind_of(model: PeriodicTask) -> str:
    return schedule_rows.kind(meta(model))


def since_of(model: PeriodicTask) -> datetime | None:
    return schedule_rows.since(meta(model))


def config_of(model: PeriodicTask) -> dict[str, Any]:
    return schedule_rows.config(model.kwargs)


def _crontab_of(model: PeriodicTask) -> Crontab | None:
    return None if model.crontab is None else Crontab.of(model.crontab)


def _seconds_of(model: PeriodicTask) -> float | None:
    i = model.interval
    return None if i is None else schedule_rows.interval_seconds(i.every, i.period)


def schedule_of(model: PeriodicTask, definition: CronDefinition) -> CronSchedule:
    """The schedule in force: the row's (runtime), shaped by the definition's kind."""
    found = schedule_rows.schedule_in_force(
        _crontab_of(model),
        _seconds_of(model),
        schedule_kind=definition.schedule.kind,
        decide=definition.schedule.decide,
    )
    return found or definition.schedule


def _interval(seconds: float) -> IntervalSchedule:
    if float(seconds).is_integer():
        every, period = int(seconds), IntervalSchedule.SECONDS
    else:  # sub-second sweeps (tests run them every 0.25 s)
        every, period = round(seconds * 1_000_000), IntervalSchedule.MICROSECONDS
    found = IntervalSchedule.objects.filter(every=every, period=period).first()
    return found or IntervalSchedule.objects.create(every=every, period=period)


def _crontab(*fields: str) -> CrontabSchedule:
    minute, hour, dom, month, dow, tz = fields
    spec = {
        "minute": minute,
        "hour": hour,
        "day_of_month": dom,
        "month_of_year": month,
        "day_of_week": dow,
        "timezone": tz,
    }
    found = CrontabSchedule.objects.filter(**spec).first()
    return found or CrontabSchedule.objects.create(**spec)


def _apply_schedule(model: PeriodicTask, schedule: CronSchedule) -> None:
    model.interval = model.crontab = model.solar = model.clocked = None
    if schedule.kind == "cron":
        assert schedule.expr is not None
        model.crontab = _crontab(*schedule.expr.split(), schedule.timezone)
    else:
        assert schedule.every_s is not None
        model.interval = _interval(schedule.every_s)


def _apply_celery_schedule(model: PeriodicTask, schedule: Any) -> None:
    """A built-in entry's schedule: a timedelta, a number of seconds or a Celery crontab."""
    from celery.schedules import crontab

    model.interval = model.crontab = model.solar = model.clocked = None
    if isinstance(schedule, crontab):
        tz = getattr(schedule, "tz", None)
        model.crontab = _crontab(
            str(schedule._orig_minute),
            str(schedule._orig_hour),
            str(schedule._orig_day_of_month),
            str(schedule._orig_month_of_year),
            str(schedule._orig_day_of_week),
            str(tz) if tz is not None else "UTC",
        )
        return
    if isinstance(schedule, timedelta):
        seconds = schedule.total_seconds()
    elif isinstance(schedule, int | float):
        seconds = float(schedule)
    else:
        seconds = schedule.run_every.total_seconds()  # celery.schedules.schedule
    model.interval = _interval(seconds)


def _code_values(d: CronDefinition) -> dict[str, Any]:
    return {"schedule": d.schedule.describe(), "config": d.config, "enabled": d.enabled}


def sync(
    builtins: Mapping[str, Mapping[str, Any]] | None, defs: Mapping[str, CronDefinition]
) -> None:
    """Write the code's cron tasks and built-in entries (None: leave those alone) into
    PeriodicTask rows."""
    now = utcnow()
    with transaction.atomic():
        from django.db import connection

        with connection.cursor() as cursor:  # two beats (or pulses) starting together
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SYNC_LOCK])
        if builtins is not None:
            for name, entry in builtins.items():
                _sync_builtin(name, entry)
            stale = PeriodicTask.objects.filter(description__contains='"taskledger": "builtin"')
            for model in stale.exclude(name__in=list(builtins)):
                model.delete()  # renamed or removed in code: built-ins are the code's to own
        for d in defs.values():
            _sync_cron(d, now)


def _sync_builtin(name: str, entry: Mapping[str, Any]) -> None:
    model = PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
    options = dict(entry.get("options") or {})
    model.task = entry["task"]
    model.args = json.dumps(list(entry.get("args") or []))
    model.kwargs = json.dumps(dict(entry.get("kwargs") or {}))
    model.queue = options.get("queue") or None
    model.priority = options.get("priority")
    expires = options.get("expires")
    model.expire_seconds = None if expires is None else max(1, math.ceil(float(expires)))
    model.description = json.dumps({"taskledger": BUILTIN})
    _apply_celery_schedule(model, entry["schedule"])
    model.save()


def _sync_cron(d: CronDefinition, now: datetime) -> None:
    model = PeriodicTask.objects.filter(name=d.name).first()
    code = _code_values(d)
    definition = schedule_rows.definition_values(d)
    if model is None:
        model = PeriodicTask(name=d.name, enabled=d.enabled)
        _apply_schedule(model, d.schedule)
        model.kwargs = json.dumps({"config": d.config})
        changed = reset_since = True
    else:
        if kind_of(model) not in (CRON, "other"):
            raise CronDefinitionError(f"cron task {d.name!r}: the name is taken by a beat entry")
        before = meta(model).get("code", {})
        changed = reset_since = False
        if before.get("schedule") != code["schedule"]:
            _apply_schedule(model, d.schedule)
            changed = reset_since = True
        if before.get("config") != code["config"]:
            model.kwargs = json.dumps({"config": d.config})
            changed = True
        if before.get("enabled") != code["enabled"]:
            model.enabled = d.enabled
            changed = reset_since = True
        if model.task != d.task_name or meta(model).get("definition") != definition:
            changed = True
    if not changed:
        return
    model.task = d.task_name
    since = now if reset_since else since_of(model)
    model.description = json.dumps(
        {
            "taskledger": CRON,
            "since": since.isoformat() if since else None,
            "code": code,
            "definition": definition,
        }
    )
    model.save()


def rows() -> list[ScheduleRow]:
    out = []
    related = ("crontab", "interval", "solar", "clocked")
    for model in PeriodicTask.objects.select_related(*related).order_by("name"):
        data, solar = meta(model), model.solar
        kind = schedule_rows.kind(data)
        schedule = schedule_rows.describe(
            _crontab_of(model),
            _seconds_of(model),
            solar=None if solar is None else (solar.event, solar.latitude, solar.longitude),
            clocked=None if model.clocked is None else model.clocked.clocked_time,
        )
        out.append(
            ScheduleRow(
                name=model.name,
                kind=kind,
                task=model.task,
                schedule=schedule,
                enabled=model.enabled,
                config=config_of(model) if kind == CRON else {},
                since=schedule_rows.since(data),
                last_run_at=model.last_run_at,
                definition=data.get("definition", {}) if kind == CRON else {},
            )
        )
    return out


def _row(name: str) -> PeriodicTask:
    model = PeriodicTask.objects.filter(name=name).first()
    if model is None:
        known = ", ".join(PeriodicTask.objects.order_by("name").values_list("name", flat=True))
        raise ScheduleError(f"no schedule named {name!r} (known: {known or 'none'})")
    return model


def set_enabled(name: str, enabled: bool, *, confirm_builtin: bool = False) -> ScheduleRow:
    """Enable or disable a cron task or a built-in entry; beats see it at their next tick.

    Disabling a built-in sweep stops recovery (lost messages, retries, dead workers), so it
    needs ``confirm_builtin``.
    """
    model = _row(name)
    if not enabled and kind_of(model) == BUILTIN and not confirm_builtin:
        raise ScheduleError(
            f"{name!r} is a built-in sweep: without it lost messages, due retries or dead "
            "workers are not handled. Pass the confirmation flag to disable it anyway."
        )
    model.enabled = enabled
    _touch_since(model)
    model.save()
    return next(r for r in rows() if r.name == name)


def set_schedule(name: str, schedule: str, *, timezone: str | None = None) -> ScheduleRow:
    """Reschedule a cron task: ``"*/5 * * * *"`` or ``"every 10"`` (seconds)."""
    model = _row(name)
    if kind_of(model) != CRON:
        raise ScheduleError(f"{name!r} is not a cron task; its schedule comes from the settings")
    definition = get(name)
    parsed = parse_schedule_text(name, schedule, timezone=timezone or "UTC")
    if definition.schedule.kind == "dynamic" and parsed.kind != "every":
        raise ScheduleError(f"{name!r} has a dynamic schedule: only 'every N' (how often to ask)")
    _apply_schedule(model, parsed)
    _touch_since(model)
    model.save()
    return next(r for r in rows() if r.name == name)


def set_config(name: str, config: Any) -> ScheduleRow:
    """Change a cron task's config (validated against its config_schema first)."""
    model = _row(name)
    if kind_of(model) != CRON:
        raise ScheduleError(f"{name!r} is not a cron task")
    try:
        checked = get(name).check_config(config)
    except CronDefinitionError as exc:
        raise ScheduleError(str(exc)) from None
    model.kwargs = json.dumps({"config": checked})
    model.save()
    return next(r for r in rows() if r.name == name)


def parse_schedule_text(name: str, text: str, *, timezone: str) -> CronSchedule:
    words = text.replace("every", " ").strip().rstrip("s").strip()
    if text.strip().startswith("every") or words.isdigit():
        if not words.isdigit() or int(words) < 1:
            raise ScheduleError(f"{name!r}: 'every N' needs a whole number of seconds >= 1")
        return CronSchedule(kind="every", every_s=int(words))
    try:
        from beat.cron import _tz

        return CronSchedule(kind="cron", expr=check_cron(name, text), timezone=_tz(name, timezone))
    except CronDefinitionError as exc:
        raise ScheduleError(str(exc)) from None


def _touch_since(model: PeriodicTask) -> None:
    """Slots before an enable or a reschedule are not "missed"."""
    data = meta(model)
    if data:
        data["since"] = utcnow().isoformat()
        model.description = json.dumps(data)


def cron_model(name: str) -> PeriodicTask:
    model = _row(name)
    if kind_of(model) != CRON:
        raise ScheduleError(f"{name!r} is not a cron task")
    return model


def enabled_crons() -> list[tuple[PeriodicTask, CronDefinition]]:
    """Enabled cron rows whose definition this process has loaded."""
    out = []
    for model in PeriodicTask.objects.filter(enabled=True).select_related("crontab", "interval"):
        if kind_of(model) != CRON:
            continue
        try:
            out.append((model, get(model.name)))
        except CronDefinitionError:
            log.warning("cron task %s is scheduled but not defined in this process", model.name)
    return out
