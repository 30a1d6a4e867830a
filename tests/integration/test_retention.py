"""Retention: dry-run equals the real run; pending approval and unfinished work untouched;
goals stay consistent; a large table is cleaned while workers run."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import func, select, text

from jobs import retention
from jobs.enqueue import enqueue
from models import Goal, Task, TaskEvent, TaskState, utcnow
from models.cron_run import CronRun, PulseRun
from models.db import transaction
from tests.support import ledger
from tests.support.services import Cluster
from workers.app import app

OLD = timedelta(days=40)


def _old_tasks(
    n: int, state: str, *, goal: str | None = None, finished_ago: timedelta = OLD
) -> None:
    """Fixture rows written straight into the table (a ledger that ran for months)."""
    with transaction() as conn:
        conn.execute(
            text(
                """
                WITH new AS (
                  INSERT INTO tasks (id, name, queue, args, kwargs, state, priority, attempts,
                      retries, max_retries, scheduled_for, timeout_s, dispatch_count,
                      verification_status, metadata, created_at, updated_at, finished_at,
                      goal_id, step_index)
                  SELECT gen_random_uuid(), 's.pay', 'taskledger', '[1]', '{}',
                      CAST(:state AS task_state),
                      3, 1, 0, 3,
                      -- unfinished rows start tomorrow: the live cluster must not run them
                      CASE WHEN :finished THEN CAST(:at AS timestamptz)
                           ELSE now() + interval '1 day' END,
                      60, 1, 'unverified', '{}', :at, :at,
                      CASE WHEN :finished THEN CAST(:at AS timestamptz) END,
                      CAST(:goal AS uuid), CASE WHEN :goal IS NULL THEN NULL ELSE g END
                  FROM generate_series(1, :n) AS g
                  RETURNING id, goal_id)
                INSERT INTO task_events (task_id, goal_id, event_type, payload, created_at)
                SELECT id, goal_id, 'task_created', '{}', :at FROM new
                """
            ),
            {
                "state": state,
                "at": utcnow() - finished_ago,
                "n": n,
                "goal": goal,
                "finished": state in {"completed", "failed", "cancelled"},
            },
        )


def _goal(status: str, ago: timedelta = OLD) -> str:
    with transaction() as conn:
        return str(
            conn.execute(
                text(
                    "INSERT INTO goals (id, title, status, priority, metadata, created_at, "
                    "updated_at) VALUES (gen_random_uuid(), 'g', CAST(:s AS goal_status), 0, "
                    "'{}', :at, :at) RETURNING id"
                ),
                {"s": status, "at": utcnow() - ago},
            ).scalar_one()
        )


def _count(*where: object) -> int:
    with transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(Task).where(*where)).scalar_one())


def test_dry_run_equals_real_and_keeps_what_it_must(cluster: Cluster, clean: None) -> None:
    _old_tasks(30, "completed")
    _old_tasks(20, "failed")
    _old_tasks(10, "cancelled")
    _old_tasks(7, "completed", finished_ago=timedelta(days=3))  # recent: kept
    _old_tasks(5, "pending_approval")  # never touched, however old
    _old_tasks(4, "queued")  # unfinished work: never touched
    done_goal = _goal("completed")
    _old_tasks(3, "completed", goal=done_goal)  # a final, old goal: goes whole
    live_goal = _goal("in_progress")
    _old_tasks(2, "completed", goal=live_goal)  # its finished steps stay with it
    mixed_goal = _goal("completed")
    _old_tasks(1, "completed", goal=mixed_goal)
    _old_tasks(1, "completed", goal=None, finished_ago=timedelta(days=1))
    with transaction() as conn:  # a step of mixed_goal finished recently: the goal stays
        conn.execute(
            text(
                "UPDATE tasks SET finished_at = now(), step_index = 2, goal_id = :g "
                "WHERE id = (SELECT id FROM tasks WHERE finished_at > now() - interval '2 days' "
                "AND goal_id IS NULL LIMIT 1)"
            ),
            {"g": mixed_goal},
        )
    # when
    planned = retention.cleanup(days=30, dry_run=True)
    assert _count() == 83  # dry run deleted nothing
    done = retention.cleanup(days=30, dry_run=False, batch=7)
    # then
    assert planned == done == {"completed": 33, "failed": 20, "cancelled": 10}
    assert _count(Task.state == TaskState.PENDING_APPROVAL) == 5
    assert _count(Task.state == TaskState.QUEUED) == 4
    with transaction() as conn:
        goals = set(map(str, conn.execute(select(Goal.id)).scalars()))
        orphans = conn.execute(
            select(func.count())
            .select_from(TaskEvent)
            .where(TaskEvent.task_id.is_not(None), ~TaskEvent.task_id.in_(select(Task.id)))
        ).scalar_one()
    assert goals == {live_goal, mixed_goal} and orphans == 0
    assert _count(Task.goal_id == live_goal) == 2 and _count(Task.goal_id == mixed_goal) == 2
    assert retention.cleanup(days=30, dry_run=True) == {"completed": 0, "failed": 0, "cancelled": 0}


def test_large_table_cleaned_while_workers_run(cluster: Cluster, clean: None) -> None:
    rows = 30_000
    for _ in range(rows // 10_000):
        _old_tasks(10_000, "completed")
    results: dict[str, object] = {}

    def clean_up() -> None:
        started = time.perf_counter()
        results["counts"] = retention.cleanup(days=30, dry_run=False, batch=1000)
        results["seconds"] = time.perf_counter() - started

    # when: cleanup runs while the workers take new work
    cleaner = threading.Thread(target=clean_up)
    cleaner.start()
    handles = [enqueue(app, "s.work", [0.01], {"label": f"live{i}"}) for i in range(40)]
    for h in handles:
        ledger.wait_state(h.id, TaskState.COMPLETED, timeout=120)
    cleaner.join(300)
    # then
    seconds = float(results["seconds"])  # type: ignore[arg-type]
    print(
        f"\nretention deleted {rows} tasks (+{rows} events) in {seconds:.2f} s: "
        f"{rows / seconds:,.0f} tasks/s, batches of 1,000, 40 tasks ran meanwhile"
    )
    assert results["counts"] == {"completed": rows, "failed": 0, "cancelled": 0}
    assert _count() == 40  # the live ones, untouched


def test_old_cron_history_goes_with_the_cutoff(clean: None) -> None:
    """Skipped fires have no task to cascade from; pulses have their own dates."""
    old, fresh = utcnow() - OLD, utcnow() - timedelta(days=1)
    with transaction() as conn:
        for i, at in enumerate((old, old, fresh)):
            conn.execute(
                CronRun.__table__.insert().values(
                    id=uuid.uuid4(),
                    name="c.report",
                    scheduled_at=at + timedelta(seconds=i),
                    trigger="beat",
                    fired_by="host:1",
                    fired_at=at,
                    skipped_reason="overlap",
                    config={},
                )
            )
        for at in (old, fresh):
            conn.execute(
                PulseRun.__table__.insert().values(
                    host="retention-test:1", started_at=at, finished_at=at, outcome={}
                )
            )
    retention.cleanup(days=30, dry_run=False, batch=1)
    with transaction() as conn:
        runs = list(
            conn.execute(select(CronRun.fired_at).where(CronRun.name == "c.report")).scalars()
        )
        pulses = list(
            conn.execute(
                select(PulseRun.finished_at).where(PulseRun.host == "retention-test:1")
            ).scalars()
        )
    assert runs == [fresh] and pulses == [fresh]
