"""``cli.cron_reads`` (plain SQL for the cron read commands) shows what the domain shows.

``cron list``, ``cron history``, ``cron stats`` and ``pulse --status`` read the schedule
tables and ``cron_runs`` without Django, SQLAlchemy or the user's modules; this checks
them against ``beat.django_schedules`` and ``jobs.cron_runs`` on the same rows, and that
the schedule tables carry what the code defines.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from beat.cron import CronDefinition
from cli import cron_reads
from cli.reads import reading
from jobs import cron_records
from models import CronRun, PulseRun, Task, TaskEvent, TaskState, utcnow
from models.db import transaction
from tests.support import cron_cluster

pytestmark = pytest.mark.usefixtures("clean")
ENABLED = ("test.upstream", "test.minutely", "test.dynamic")


@pytest.fixture()
def defs(database: str) -> Iterator[dict[str, CronDefinition]]:
    """The test cron tasks synced into the schedule tables, three of them enabled."""
    from beat import django_schedules, django_setup
    from beat.cron import validate_all

    django_setup.migrate()
    cron_cluster.declare_queue()
    import tests.support.cron_tasks  # noqa: F401 - the definitions

    cron_cluster.truncate()
    found = validate_all()
    django_schedules.sync(None, found)
    for name in ENABLED:
        django_schedules.set_enabled(name, True)
    yield found
    cron_cluster.disable_all_crons()
    cron_cluster.truncate()


def _backdate_since(name: str, since: datetime) -> None:
    """As if enabled long ago: its recent slots count as missed when nobody fired them."""
    from django_celery_beat.models import PeriodicTask

    model = PeriodicTask.objects.get(name=name)
    data = json.loads(model.description)
    model.description = json.dumps({**data, "since": since.isoformat()})
    model.save()


def _fire(conn: Any, name: str, slot: datetime, state: TaskState | None, **task: Any) -> uuid.UUID:
    """One fire of ``name``; with a state, the ledger task it started (which ran on w1)."""
    task_id = None
    if state is not None:
        task_id = uuid.uuid4()
        conn.execute(
            insert(Task).values(
                id=task_id, name="cron_t.x", queue="q", state=state, timeout_s=30.0, **task
            )
        )
        if "finished_at" in task or state is TaskState.RUNNING:
            for worker, offset in (("w0", 2.0), ("w1", 1.0)):  # retried: two starts
                conn.execute(
                    insert(TaskEvent).values(
                        task_id=task_id,
                        event_type="task_started",
                        payload={"worker": worker},
                        created_at=slot + timedelta(seconds=offset),
                    )
                )
    conn.execute(
        insert(CronRun).values(
            id=uuid.uuid4(),
            name=name,
            scheduled_at=slot,
            trigger="beat",
            fired_by="host:1",
            fired_at=slot + timedelta(seconds=0.5),
            task_id=task_id,
            skipped_reason=None if state is not None else "previous_instance_running",
            config={"fail": state is TaskState.FAILED},
        )
    )
    return slot


@pytest.fixture()
def fires(defs: dict[str, CronDefinition]) -> datetime:
    """test.upstream: completed, timed out, cancelled, failed twice, skipped, running."""
    base = utcnow().replace(microsecond=0) - timedelta(hours=2)

    def done(seconds: float, **more: Any) -> dict[str, Any]:
        return {"attempts": 2, "finished_at": base + timedelta(seconds=seconds), **more}

    with transaction() as conn:
        at = [base + timedelta(minutes=m) for m in range(8)]
        _fire(conn, "test.upstream", at[0], TaskState.COMPLETED, **done(30, result={"n": 1}))
        _fire(conn, "test.upstream", at[1], TaskState.FAILED, **done(95, last_outcome="timeout"))
        _fire(conn, "test.upstream", at[2], TaskState.CANCELLED, **done(150))
        for i in (3, 4):
            _fire(
                conn,
                "test.upstream",
                at[i],
                TaskState.FAILED,
                **done(i * 60 + 20, last_error="boom"),
            )
        _fire(conn, "test.upstream", at[5], None)
        _fire(conn, "test.upstream", at[6], TaskState.RUNNING, attempts=1)
        _fire(conn, "test.downstream", at[7], TaskState.QUEUED)
        for host in ("pulse-a", "pulse-b"):
            conn.execute(
                insert(PulseRun).values(
                    host=host,
                    started_at=at[7],
                    finished_at=at[7] + timedelta(seconds=1),
                    outcome={"ran": [], "waiting": [], "skipped": [], "already_fired": []},
                )
            )
    _backdate_since("test.minutely", base)
    return base


def _domain_listing(defs: dict[str, CronDefinition]) -> list[dict[str, Any]]:
    """What ``cron list --json`` printed when it read through Django and the definitions."""
    from beat import django_schedules
    from jobs import cron_runs

    out = []
    with transaction() as conn:
        for row in django_schedules.rows():
            if row.kind == "cron" and row.name not in defs:
                continue  # another module's cron task: its definition is not loaded here
            d = defs.get(row.name)
            out.append(
                {
                    "name": row.name,
                    "kind": row.kind,
                    "task": row.task,
                    "schedule": row.schedule,
                    "enabled": row.enabled,
                    "overlap": d.overlap if d else None,
                    "priority": d.priority if d else None,
                    "timeout": d.timeout if d else None,
                    "tags": list(d.tags) if d else [],
                    "depends_on": list(d.depends_on) if d else [],
                    "config": row.config,
                    "last_fire_at": cron_runs.last_fire_at(conn, row.name) if d else None,
                }
            )
    return out


def _domain_stats(defs: dict[str, CronDefinition]) -> list[dict[str, Any]]:
    """``cron stats --json`` through Django, the definitions and ``jobs.cron_runs``."""
    from beat import django_schedules
    from jobs import cron_runs
    from models.settings import get_settings

    now = utcnow()
    tolerance = timedelta(seconds=get_settings().cron_tolerance_seconds)
    models = {m.name: m for m, _ in django_schedules.enabled_crons()}
    out = []
    with transaction() as conn:
        for name in sorted(defs):
            st = cron_runs.stats(conn, [name])[0]
            model = models.get(name)
            expected = None
            if model is not None and defs[name].schedule.kind != "dynamic":
                slot = django_schedules.schedule_of(model, defs[name]).latest_slot(now - tolerance)
                since = django_schedules.since_of(model)
                expected = slot if since is None or slot >= since else None
            problems = cron_records.health(
                st,
                enabled=model is not None,
                last_fire=cron_runs.last_fire_at(conn, name),
                expected_by=expected,
            )
            out.append({**st.as_json(), "enabled": model is not None, "health": problems})
    return out


def test_listing_matches_the_domain_and_shows_the_schedule_in_force(
    defs: dict[str, CronDefinition], fires: datetime
) -> None:
    from beat import django_schedules

    # given: a runtime change: test.minutely now every 90 s
    django_schedules.set_schedule("test.minutely", "every 90")
    with reading() as conn:
        listing = cron_reads.listing(conn)
    # then: the plain-SQL listing is the domain's, cron tasks of other modules aside
    ours = [r for r in listing if r["kind"] != "cron" or r["name"] in defs]
    assert ours == _domain_listing(defs)
    by_name = {r["name"]: r for r in listing}
    assert set(defs) <= set(by_name)
    assert by_name["test.minutely"]["schedule"] == "every 90s"
    assert by_name["test.five_minutes"]["schedule"] == "*/5 * * * * (Europe/Paris)"
    assert by_name["test.downstream"]["depends_on"] == ["test.upstream"]
    assert by_name["test.upstream"]["last_fire_at"] == fires + timedelta(minutes=6)
    assert [by_name[n]["enabled"] for n in ENABLED] == [True, True, True]


def test_history_and_stats_match_the_domain(
    defs: dict[str, CronDefinition], fires: datetime
) -> None:
    from jobs import cron_runs

    with reading() as conn:
        history = cron_reads.history(conn, "test.upstream", limit=50)
        stats = cron_reads.stats_with_health(conn, cron_reads.crons(conn), sorted(defs))
        pulse = cron_reads.last_pulse(conn)
    with transaction() as conn:
        domain_history = cron_runs.history(conn, "test.upstream", limit=50)
        domain_pulse = dict(cron_runs.last_pulse(conn)._mapping)
    assert [r.as_json() for r in history] == [r.as_json() for r in domain_history]
    assert stats == _domain_stats(defs)
    domain_pulse.pop("id")
    assert pulse == domain_pulse
    # and the numbers are the fires': statuses from the tasks, durations from the first start
    assert [r.status for r in reversed(history)] == [
        "completed", "timeout", "cancelled", "failed", "failed", "skipped", "running",
    ]  # fmt: skip
    assert history[-1].duration_ms == pytest.approx(29_000)  # earliest start +1 s, end +30 s
    assert history[-1].host == "w1" and history[-1].result == {"n": 1}
    assert history[3].error == "boom"
    by_name = {s["name"]: s for s in stats}
    upstream = by_name["test.upstream"]
    assert (upstream["runs"], upstream["skipped"], upstream["in_progress"]) == (6, 1, 1)
    assert upstream["consecutive_failures"] == 4 and "failing" in upstream["health"]
    assert by_name["test.minutely"]["health"] == ["missed_schedule"]
    assert by_name["test.dynamic"]["health"] == []  # no slots to miss
    assert by_name["test.slow"]["enabled"] is False
    assert pulse is not None and pulse["host"] == "pulse-b"


def test_a_changed_definition_is_stored_without_resetting_since(
    defs: dict[str, CronDefinition],
) -> None:
    from beat import django_schedules

    before = {r.name: r for r in django_schedules.rows()}["test.upstream"]
    assert before.definition["schedule_kind"] == "cron"
    changed = dataclasses.replace(defs["test.upstream"], priority=5, tags=("nightly",))
    django_schedules.sync(None, {"test.upstream": changed})
    after = {r.name: r for r in django_schedules.rows()}["test.upstream"]
    assert (after.definition["priority"], after.definition["tags"]) == (5, ["nightly"])
    assert after.since == before.since and after.enabled
    with reading() as conn:
        [listed] = [r for r in cron_reads.listing(conn) if r["name"] == "test.upstream"]
    assert (listed["priority"], listed["tags"]) == (5, ["nightly"])
