"""Cron tasks under real beats and workers: overlap across hosts, runtime changes,
dynamic schedules, dependencies, queueing, history and stats."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models import CronRun, Task, TaskEvent
from models.db import transaction
from tests.support import cron_cluster
from tests.support.services import wait_for

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(scope="module")
def procs(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two workers and two beats, as on two hosts, all with the test cron tasks loaded."""
    from beat import django_setup

    django_setup.migrate()
    cron_cluster.declare_queue()
    import tests.support.cron_tasks  # noqa: F401 - definitions for run_now and the checks

    tmp = Path(tmp_path_factory.mktemp("cron"))
    env = cron_cluster.cron_env()
    started: dict[str, Any] = {"env": env, "tmp": tmp}
    started["workers"] = [cron_cluster.start_worker(tmp, env), cron_cluster.start_worker(tmp, env)]
    started["beats"] = [
        cron_cluster.start_beat(tmp, env, "a"),
        cron_cluster.start_beat(tmp, env, "b"),
    ]
    yield started
    for proc in started["beats"] + started["workers"]:
        proc.stop()


@pytest.fixture(autouse=True)
def _fresh(procs: dict[str, Any]) -> Iterator[None]:
    cron_cluster.truncate()
    cron_cluster.disable_all_crons()
    yield
    cron_cluster.disable_all_crons()


def runs(name: str) -> list[Any]:
    with transaction() as conn:
        return list(
            conn.execute(
                select(CronRun.__table__, Task.state, Task.started_at, Task.finished_at)
                .outerjoin(Task, Task.id == CronRun.task_id)
                .where(CronRun.name == name)
                .order_by(CronRun.scheduled_at)
            ).all()
        )


def started_intervals(name: str) -> list[tuple[datetime, datetime | None, Any]]:
    """(first task_started, finished_at, task id) of each run that started work."""
    with transaction() as conn:
        rows = conn.execute(
            select(CronRun.task_id, Task.finished_at)
            .join(Task, Task.id == CronRun.task_id)
            .where(CronRun.name == name)
        ).all()
        out = []
        for task_id, finished in rows:
            first = conn.execute(
                select(TaskEvent.created_at)
                .where(TaskEvent.task_id == task_id, TaskEvent.event_type == "task_started")
                .order_by(TaskEvent.id)
                .limit(1)
            ).scalar_one_or_none()
            if first is not None:
                out.append((first, finished, task_id))
    return sorted(out, key=lambda x: x[0])


def set_enabled(name: str, enabled: bool) -> None:
    from beat import django_schedules

    django_schedules.set_enabled(name, enabled)


def test_runtime_enable_disable_reschedule_and_config(procs: dict[str, Any], counter) -> None:
    from beat import django_schedules

    # given: test.tick (every 1 s) is disabled: nothing fires
    time.sleep(1.5)
    assert runs("test.tick") == []
    # when: enabled at runtime, no restart
    t0 = time.time()
    set_enabled("test.tick", True)
    wait_for(lambda: counter.llen("tick") >= 1, 10, "first tick after enable")
    print(f"\nenable -> first run {time.time() - t0:.2f}s")
    # then: config changes reach the next runs (validated by the schema first)
    django_schedules.set_config("test.tick", {"label": "b", "repeat": 2})
    wait_for(
        lambda: any(json.loads(x)["label"] == "b" for x in counter.lrange("tick", 0, -1)),
        10,
        "a run with the new config",
    )
    # when: disabled; after one tick nothing fires any more
    set_enabled("test.tick", False)
    time.sleep(1.5)
    fired = len(runs("test.tick"))
    time.sleep(3)
    assert len(runs("test.tick")) == fired
    # when: rescheduled to every 3 s and enabled: slots are multiples of 3 s
    django_schedules.set_schedule("test.tick", "every 3")
    set_enabled("test.tick", True)
    wait_for(lambda: len(runs("test.tick")) >= fired + 2, 15, "two fires every 3 s")
    set_enabled("test.tick", False)
    new = [r for r in runs("test.tick")][fired:]
    assert all(int(r.scheduled_at.timestamp()) % 3 == 0 for r in new)
    assert all(r.scheduled_at.microsecond == 0 for r in new)
    # and the result schema was applied on the way out
    with transaction() as conn:
        results = (
            conn.execute(
                select(Task.result)
                .join(CronRun, CronRun.task_id == Task.id)
                .where(CronRun.name == "test.tick", Task.state == "completed")
            )
            .scalars()
            .all()
        )
    assert {"echo": "bb"} in results and {"echo": "a"} in results


def test_overlap_two_beats_two_workers_and_a_sigkill(procs: dict[str, Any], counter) -> None:
    """A 1-second schedule with a 3-second task, two beats, two workers, 15 s, and the
    worker running it SIGKILLed halfway: runs never overlap, every slot is fired once."""
    # given: test.slow every 1 s (overlap="skip", 3 s per run, no retries)
    set_enabled("test.slow", True)
    t0 = time.monotonic()
    killed_task = None
    # when: halfway, SIGKILL the whole worker running it; a new worker replaces it
    wait_for(lambda: time.monotonic() - t0 > 6, 10, "6 s")
    running = wait_for(lambda: _running_worker("test.slow"), 10, "a running slow run")
    task_id, worker_id = running
    victim = next(p for p in procs["workers"] if worker_id.startswith(p.node))
    victim.kill()
    killed_task = task_id
    procs["workers"].remove(victim)
    procs["workers"].append(cron_cluster.start_worker(procs["tmp"], procs["env"]))
    wait_for(lambda: time.monotonic() - t0 > 15, 20, "15 s")
    set_enabled("test.slow", False)
    wait_for(lambda: not _unfinished("test.slow"), 30, "every run to end")
    rows = runs("test.slow")
    # then: every slot from the first to the last fire is there exactly once (never lost;
    # the unique run key makes "never doubled" structural)
    slots = [r.scheduled_at for r in rows]
    assert len(slots) >= 12
    assert slots == [slots[0] + timedelta(seconds=i) for i in range(len(slots))]
    # then: the runs that started never overlap in time, by the ledger's own timestamps
    intervals = started_intervals("test.slow")
    assert len(intervals) >= 3
    for (_, end, task), (start, _, _) in itertools.pairwise(intervals):
        assert end is not None and end <= start, f"run {task} overlaps the next one"
    # then: skipped fires carry their reason; a handler body started once per run
    skipped = [r for r in rows if r.task_id is None]
    reasons = {r.skipped_reason for r in skipped}
    assert reasons <= {"previous_instance_running", "missed"}
    assert sum(r.skipped_reason == "previous_instance_running" for r in skipped) >= 5
    starts = [json.loads(x) for x in counter.lrange("slow", 0, -1)]
    started_tasks = [s["task"] for s in starts if s["event"] == "start"]
    assert sorted(started_tasks) == sorted(str(t) for _, _, t in intervals)
    # then: the killed run ended when its lease ran out, as a lost worker, and no retry
    with transaction() as conn:
        killed = conn.execute(select(Task).where(Task.id == killed_task)).one()
    assert killed.state == "failed" and killed.last_outcome == "worker_lost"
    by_beat: dict[str, int] = {}
    for r in rows:
        by_beat[r.fired_by] = by_beat.get(r.fired_by, 0) + 1
    print(
        f"\n{len(rows)} fires in {len(slots)} slots, {len(intervals)} runs, "
        f"{len(skipped)} skipped ({sorted(reasons)}), fired by {by_beat}"
    )


def _running_worker(name: str) -> tuple[Any, str] | None:
    with transaction() as conn:
        row = conn.execute(
            select(Task.id, Task.worker_id)
            .join(CronRun, CronRun.task_id == Task.id)
            .where(CronRun.name == name, Task.state == "running", Task.worker_id.is_not(None))
        ).first()
    return None if row is None else (row.id, row.worker_id)


def _unfinished(name: str) -> int:
    with transaction() as conn:
        return len(
            conn.execute(
                select(Task.id)
                .join(CronRun, CronRun.task_id == Task.id)
                .where(
                    CronRun.name == name,
                    Task.state.in_(["queued", "running", "retry_wait", "blocked"]),
                )
            ).all()
        )


def test_dynamic_schedule_function(procs: dict[str, Any], counter) -> None:
    # given: test.dynamic asks dynamic_go() every second; it says no
    set_enabled("test.dynamic", True)
    time.sleep(3)
    assert runs("test.dynamic") == []
    # when: the function starts saying yes
    counter.set("dynamic:go", 1)
    wait_for(lambda: counter.llen("dynamic") >= 2, 15, "two dynamic runs")
    # when: it says no again, runs stop within a tick
    counter.delete("dynamic:go")
    time.sleep(1.5)
    n = len(runs("test.dynamic"))
    time.sleep(3)
    assert len(runs("test.dynamic")) == n
    assert all(r.task_id is not None for r in runs("test.dynamic"))


def _wait_final(task_id: Any) -> str:
    def final() -> str | None:
        with transaction() as conn:
            state = conn.execute(select(Task.state).where(Task.id == task_id)).scalar_one()
        return str(state) if state in ("completed", "failed", "cancelled") else None

    return str(wait_for(final, 30, f"task {task_id} to end"))


def test_dependency_failed_skips_the_dependent(procs: dict[str, Any], counter) -> None:
    from beat import django_schedules
    from beat.pulse import run_now

    # given: downstream depends on upstream, which has never run
    first = run_now("test.downstream")
    assert (first.status, first.reason) == ("skipped", "dependency_not_run")
    # when: upstream fails, downstream is skipped with dependency_failed
    django_schedules.set_config("test.upstream", {"fail": True})
    up = run_now("test.upstream")
    assert _wait_final(up.task_id) == "failed"
    second = run_now("test.downstream")
    assert (second.status, second.reason) == ("skipped", "dependency_failed")
    # when: upstream is still running, downstream waits for nothing: dependency_running
    django_schedules.set_config("test.upstream", {"fail": False, "seconds": 2})
    up = run_now("test.upstream")
    third = run_now("test.downstream")
    assert (third.status, third.reason) == ("skipped", "dependency_running")
    # when: upstream completed, downstream runs
    assert _wait_final(up.task_id) == "completed"
    fourth = run_now("test.downstream")
    assert fourth.status == "started"
    assert _wait_final(fourth.task_id) == "completed"
    assert counter.llen("downstream") == 1


def test_overlap_queue_waits_for_the_previous_run(procs: dict[str, Any], counter) -> None:
    from beat.pulse import run_now

    # given: test.queued (overlap="queue", 2 s per run)
    first = run_now("test.queued")
    # when: fired again while the first runs, and a third time while the second waits
    second = run_now("test.queued")
    third = run_now("test.queued")
    # then: the second waits (blocked), the third is skipped: one held run, not a pile
    assert first.status == "started"
    assert second.status == "waiting"
    assert (third.status, third.reason) == ("skipped", "previous_instance_queued")
    # then: the second starts after the first ends (released by a beat tick) and both finish
    assert _wait_final(first.task_id) == "completed"
    assert _wait_final(second.task_id) == "completed"
    log = [json.loads(x) for x in counter.lrange("queued", 0, -1)]
    assert [e["event"] for e in log] == ["start", "end", "start", "end"]
    assert log[1]["task"] == str(first.task_id) and log[2]["task"] == str(second.task_id)
    assert log[2]["t"] >= log[1]["t"]


def test_history_and_stats_match_the_runs(procs: dict[str, Any]) -> None:
    from beat import django_schedules
    from beat.pulse import run_now
    from jobs import cron_records

    # given: five manual runs of test.upstream: ok, ok, fail, ok, fail, fail (+ one skipped)
    plan = [False, False, True, False, True, True]
    for fail in plan:
        django_schedules.set_config("test.upstream", {"fail": fail, "seconds": 0.2})
        result = run_now("test.upstream")
        _wait_final(result.task_id)
    django_schedules.set_config("test.upstream", {"fail": False, "seconds": 1.5})
    long_run = run_now("test.upstream")
    skipped = run_now("test.upstream")
    assert skipped.reason == "previous_instance_running"
    _wait_final(long_run.task_id)
    # when: history and stats are read through the CLI (JSON)
    out = cron_cluster.taskledger("cron", "history", "test.upstream", "--limit", "50", "--json")
    assert out.returncode == 0, out.stderr
    history = json.loads(out.stdout)
    out = cron_cluster.taskledger("cron", "stats", "test.upstream", "--json")
    assert out.returncode == 0, out.stderr
    [st] = json.loads(out.stdout)
    # then: history has every fire, newest first, each with its task's outcome
    assert [h["status"] for h in reversed(history)] == [
        "completed",
        "completed",
        "failed",
        "completed",
        "failed",
        "failed",
        "completed",
        "skipped",
    ]
    assert history[0]["skipped_reason"] == "previous_instance_running"
    assert all(h["host"] for h in history if h["status"] != "skipped")
    assert "upstream told to fail" in history[2]["error"]
    # then: stats are those runs' numbers (independently recomputed here)
    durations = [h["duration_ms"] for h in history if h["status"] in ("completed", "failed")]
    # a run's duration: its first task_started event to the task's finished_at
    db_durations = [
        (end - start).total_seconds() * 1000 for start, end, _ in started_intervals("test.upstream")
    ]
    assert sorted(round(d, 3) for d in durations) == sorted(round(d, 3) for d in db_durations)
    assert (st["fires"], st["runs"], st["skipped"]) == (8, 7, 1)
    assert (st["completed"], st["failed"]) == (4, 3)
    assert st["success_rate"] == round(4 / 7, 4)
    assert st["mean_duration_ms"] == pytest.approx(sum(durations) / 7, abs=0.01)
    assert st["p95_duration_ms"] == pytest.approx(
        cron_records.percentile(durations, 0.95), abs=0.01
    )
    assert st["consecutive_failures"] == 0  # the last finished run completed
    assert st["last_failure_error"] and "upstream told to fail" in st["last_failure_error"]
    assert st["last_status"] == "completed"
    print(f"\nstats: {st}")
