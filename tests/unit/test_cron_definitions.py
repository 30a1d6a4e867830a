"""Cron definitions are refused with a message naming them; schedules are aligned slots;
stats are plain arithmetic over the runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from beat import cron as cron_decorator
from beat.cron import CronDefinitionError, CronSchedule, forget, parse_schedule, validate_all
from jobs import DurableTask
from jobs.cron_records import RunRecord, RunStatus, percentile, run_status, stats_from
from models import TaskState
from workers.app import app


class Limits(BaseModel):
    limit: int


@pytest.fixture()
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        forget(name)


def _task(name: str, takes_config: bool = True) -> DurableTask:
    if takes_config:

        def fn(config: dict) -> None:  # type: ignore[type-arg]
            return None
    else:

        def fn() -> None:  # type: ignore[misc]
            return None

    fn.__name__ = name.replace(".", "_")
    return app.task(base=DurableTask, name=name)(fn)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "61 * * * *"}, "invalid cron string '61 * * * *'"),
        ({"schedule": "* * *"}, "invalid cron string"),
        ({"schedule": "*/5 * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": 0}, "every must be a whole number of seconds >= 1"),
        ({"every": 1.5}, "every must be a whole number"),
        ({}, "give one schedule"),
        ({"schedule": "* * * * *", "every": 5}, "give one schedule"),
        ({"every": 5, "overlap": "parallel"}, "overlap must be one of"),
        ({"every": 5, "priority": 9}, "priority must be from 1"),
        ({"every": 5, "timeout": -1}, "timeout must be > 0"),
        ({"every": 5, "config_schema": dict}, "config_schema must be a pydantic model"),
    ],
)
def test_invalid_definitions_are_refused_naming_the_task(kwargs, message) -> None:
    with pytest.raises(CronDefinitionError) as exc:
        cron_decorator(name="bad.one", **kwargs)
    assert "'bad.one'" in str(exc.value) or "bad.one" in str(exc.value)
    assert message in str(exc.value)


def test_bad_config_is_refused(registered: list[str]) -> None:
    with pytest.raises(CronDefinitionError, match=r"'unit.cfg'.*config does not match Limits"):
        cron_decorator(every=5, name="unit.cfg", config={"limit": "many"}, config_schema=Limits)(
            _task("unit.cfg_task")
        )
    with pytest.raises(CronDefinitionError, match="takes no `config` parameter"):
        cron_decorator(every=5, name="unit.cfg2", config={"a": 1})(
            _task("unit.cfg2_task", takes_config=False)
        )
    registered.append("unit.ok")
    d = cron_decorator(every=5, name="unit.ok", config={"limit": "7"}, config_schema=Limits)
    d(_task("unit.ok_task"))
    assert validate_all()["unit.ok"].config == {"limit": 7}


def test_duplicate_name_unknown_dependency_and_cycles(registered: list[str]) -> None:
    registered += ["unit.a", "unit.b", "unit.c"]
    cron_decorator(every=5, name="unit.a")(_task("unit.a_task"))
    with pytest.raises(CronDefinitionError, match=r"duplicate cron task name 'unit\.a'"):
        cron_decorator(every=5, name="unit.a")(_task("unit.other_task"))
    cron_decorator(every=5, name="unit.b", depends_on=["unit.nope"])(_task("unit.b_task"))
    with pytest.raises(CronDefinitionError, match=r"'unit\.b': unknown dependency 'unit\.nope'"):
        validate_all()
    forget("unit.b")
    cron_decorator(every=5, name="unit.b", depends_on=["unit.c"])(_task("unit.b2_task"))
    cron_decorator(every=5, name="unit.c", depends_on=["unit.b"])(_task("unit.c_task"))
    with pytest.raises(CronDefinitionError, match="circular dependency"):
        validate_all()
    forget("unit.b")
    forget("unit.c")
    with pytest.raises(CronDefinitionError, match="taken by a built-in"):
        validate_all(extra_names=["unit.a"])
    with pytest.raises(CronDefinitionError, match=r"above @app\.task"):
        cron_decorator(every=5, name="unit.plain")(lambda: None)


T = datetime(2026, 1, 1, 12, 0, 7, 250000, tzinfo=UTC)


def test_every_slots_are_aligned_so_any_two_processes_agree() -> None:
    every = CronSchedule(kind="every", every_s=10)
    assert every.latest_slot(T) == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert every.next_slot(T) == datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    # a slot exactly now is the latest, not the previous one
    assert every.latest_slot(every.next_slot(T)) == every.next_slot(T)
    later = T + timedelta(seconds=35)  # 12:00:42.25: slots 10, 20, 30, 40 lie before it
    assert every.slots_between(every.latest_slot(T), later, limit=10) == [
        datetime(2026, 1, 1, 12, 0, s, tzinfo=UTC) for s in (10, 20, 30, 40)
    ]
    assert len(every.slots_between(T - timedelta(hours=1), T, limit=4)) == 4


def test_cron_slots_follow_the_timezone() -> None:
    paris = parse_schedule("x", "0 9 * * *", every=None, timezone="Europe/Paris", check_every=60)
    # 09:00 in Paris in January is 08:00 UTC
    assert paris.latest_slot(T) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert paris.next_slot(T) == datetime(2026, 1, 2, 8, 0, tzinfo=UTC)
    five = parse_schedule("x", "*/5 * * * *", every=None, timezone="UTC", check_every=60)
    exact = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert five.latest_slot(exact) == exact
    assert five.latest_slot(exact - timedelta(microseconds=1)) == datetime(
        2026, 1, 1, 12, 0, tzinfo=UTC
    )
    dynamic = parse_schedule("x", lambda: True, every=None, timezone="UTC", check_every=30)
    assert dynamic.kind == "dynamic" and dynamic.latest_slot(T).second == 0


def _record(status: RunStatus, minute: int, duration: float | None, error: str | None = None):
    return RunRecord(
        id=None,  # type: ignore[arg-type]
        name="n",
        scheduled_at=T + timedelta(minutes=minute),
        fired_at=T,
        trigger="beat",
        fired_by="h",
        status=status,
        skipped_reason="previous_instance_running" if status is RunStatus.SKIPPED else None,
        task_id=None,
        attempts=1,
        started_at=None,
        finished_at=None,
        duration_ms=duration,
        config={},
        result=None,
        error=error,
        host=None,
    )


def test_stats_arithmetic() -> None:
    S = RunStatus
    newest_first = [
        _record(S.FAILED, 6, 300.0, "boom"),
        _record(S.TIMEOUT, 5, 500.0, "slow"),
        _record(S.SKIPPED, 4, None),
        _record(S.COMPLETED, 3, 100.0),
        _record(S.RUNNING, 2, None),
        _record(S.COMPLETED, 1, 200.0),
    ]
    st = stats_from("n", newest_first)
    # 6 fires, 5 started, 4 finished (2 ok), 2 failures in a row since the last success
    assert (st.fires, st.runs, st.skipped, st.in_progress) == (6, 5, 1, 1)
    assert (st.completed, st.failed, st.success_rate) == (2, 2, 0.5)
    assert st.mean_duration_ms == (300 + 500 + 100 + 200) / 4
    # p95 of [100, 200, 300, 500]: rank 0.95 * 3 = 2.85 -> 300 + 0.85 * 200 = 470
    assert st.p95_duration_ms == 470.0
    assert st.consecutive_failures == 2
    assert st.last_failure_error == "boom" and st.last_status == "failed"
    assert percentile([], 0.95) is None
    assert percentile([7.0], 0.95) == 7.0


@pytest.mark.parametrize(
    ("state", "outcome", "status"),
    [
        (None, None, "skipped"),
        (TaskState.BLOCKED, None, "waiting"),
        (TaskState.QUEUED, None, "pending"),
        (TaskState.RETRY_WAIT, "error", "running"),
        (TaskState.COMPLETED, "ok", "completed"),
        (TaskState.FAILED, "timeout", "timeout"),
        (TaskState.FAILED, "worker_lost", "failed"),
        (TaskState.CANCELLED, None, "cancelled"),
    ],
)
def test_run_status_comes_from_the_task(state, outcome, status) -> None:
    assert run_status(state, outcome) == status
