"""The cron read commands in plain SQL: the schedule in force, fires, stats, health, pulses.

``cron list``, ``cron history``, ``cron stats`` and ``pulse --status`` read the schedule
tables (``django_celery_beat_*``, which beat, pulse and the cron write commands keep in
sync with the code) and ``cron_runs`` without importing Django, SQLAlchemy, Celery or the
user's task modules: what they show is what beat fires from. The mirrored domain reads are
``beat.django_schedules.rows``, ``jobs.cron_runs.history``/``last_fire_at``/``last_pulse``;
both build their rows with ``beat.schedule_rows`` and ``jobs.cron_records``, and
tests/integration/test_cron_reads.py checks that they agree.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from beat import schedule_rows
from beat.schedule_rows import CRON, Crontab, ScheduleRow
from jobs import cron_records
from models.settings import get_settings

_SCHEDULES = """
SELECT p.name, p.task, p.enabled, p.kwargs, p.description, p.last_run_at,
       c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone,
       i.every, i.period, s.event, s.latitude, s.longitude, k.clocked_time
FROM django_celery_beat_periodictask p
LEFT JOIN django_celery_beat_crontabschedule c ON c.id = p.crontab_id
LEFT JOIN django_celery_beat_intervalschedule i ON i.id = p.interval_id
LEFT JOIN django_celery_beat_solarschedule s ON s.id = p.solar_id
LEFT JOIN django_celery_beat_clockedschedule k ON k.id = p.clocked_id
ORDER BY p.name
"""

_HISTORY = """
SELECT r.*, t.state, t.last_outcome, t.attempts, t.finished_at, t.result, t.last_error,
       (SELECT min(e.created_at) FROM task_events e
         WHERE e.task_id = r.task_id AND e.event_type = 'task_started') AS first_start,
       (SELECT e.payload ->> 'worker' FROM task_events e
         WHERE e.task_id = r.task_id AND e.event_type = 'task_started'
         ORDER BY e.id DESC LIMIT 1) AS host
FROM cron_runs r LEFT JOIN tasks t ON t.id = r.task_id
WHERE r.name = %s
ORDER BY r.scheduled_at DESC, r.fired_at DESC
LIMIT %s
"""


def _crontab(row: Any) -> Crontab | None:
    return None if row.minute is None else Crontab.of(row)


def _seconds(row: Any) -> float | None:
    return None if row.every is None else schedule_rows.interval_seconds(row.every, row.period)


def schedules(conn: psycopg.Connection[Any]) -> list[tuple[ScheduleRow, Any]]:
    """Every schedule row (``beat.django_schedules.rows``), with its raw columns."""
    out = []
    for row in conn.execute(_SCHEDULES):
        data = schedule_rows.meta(row.description)
        kind = schedule_rows.kind(data)
        solar = None if row.event is None else (row.event, row.latitude, row.longitude)
        schedule = ScheduleRow(
            name=row.name,
            kind=kind,
            task=row.task,
            schedule=schedule_rows.describe(
                _crontab(row), _seconds(row), solar=solar, clocked=row.clocked_time
            ),
            enabled=row.enabled,
            config=schedule_rows.config(row.kwargs) if kind == CRON else {},
            since=schedule_rows.since(data),
            last_run_at=row.last_run_at,
            definition=data.get("definition", {}) if kind == CRON else {},
        )
        out.append((schedule, row))
    return out


Crons = dict[str, tuple[ScheduleRow, Any]]


def crons(conn: psycopg.Connection[Any]) -> Crons:
    """The cron tasks' schedule rows by name, in name order."""
    return {s.name: (s, row) for s, row in schedules(conn) if s.kind == CRON}


def last_fires(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Each cron task's latest fired slot (``jobs.cron_runs.last_fire_at``)."""
    sql = "SELECT name, max(scheduled_at) AS last FROM cron_runs GROUP BY name"
    return {row.name: row.last for row in conn.execute(sql)}


def listing(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """``cron list --json``: every schedule row, a cron task's with its definition."""
    fires = last_fires(conn)
    out = []
    for s, _ in schedules(conn):
        d = s.definition
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                "task": s.task,
                "schedule": s.schedule,
                "enabled": s.enabled,
                "overlap": d.get("overlap"),
                "priority": d.get("priority"),
                "timeout": d.get("timeout"),
                "tags": list(d.get("tags", [])),
                "depends_on": list(d.get("depends_on", [])),
                "config": s.config,
                "last_fire_at": fires.get(s.name) if s.kind == CRON else None,
            }
        )
    return out


def history(
    conn: psycopg.Connection[Any], name: str, *, limit: int
) -> list[cron_records.RunRecord]:
    """One cron task's fires, newest first (``jobs.cron_runs.history``)."""
    return [cron_records.record(row) for row in conn.execute(_HISTORY, (name, limit))]


def stats_with_health(
    conn: psycopg.Connection[Any], found: Crons, names: list[str]
) -> list[dict[str, Any]]:
    """``cron stats --json``: each named cron task's stats over its last fires, and its
    health; ``found`` is what ``crons`` returned."""
    now = datetime.now(UTC)
    tolerance = timedelta(seconds=get_settings().cron_tolerance_seconds)
    fires = last_fires(conn)
    out = []
    for name in names:
        st = cron_records.stats_from(name, history(conn, name, limit=cron_records.STATS_WINDOW))
        s, row = found[name]
        expected = None
        kind = s.definition.get("schedule_kind")
        schedule = schedule_rows.schedule_in_force(_crontab(row), _seconds(row), schedule_kind=kind)
        if s.enabled and kind not in (None, "dynamic") and schedule is not None:
            slot = schedule.latest_slot(now - tolerance)
            expected = slot if s.since is None or slot >= s.since else None
        problems = cron_records.health(
            st, enabled=s.enabled, last_fire=fires.get(name), expected_by=expected
        )
        out.append({**st.as_json(), "enabled": s.enabled, "health": problems})
    return out


def last_pulse(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """The latest pulse (``jobs.cron_runs.last_pulse``) without its id."""
    row = conn.execute("SELECT * FROM cron_pulses ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    data: dict[str, Any] = row._asdict()
    data.pop("id", None)
    return data
