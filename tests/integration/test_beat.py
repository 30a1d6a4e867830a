"""Two beats at once do no harm: every sweep is idempotent and try-locked.

The sweeps ride the default queue, so two workers (two pool processes each) really
run them concurrently, and the advisory locks decide which of two overlapping sweeps
of a kind acts.
"""

from __future__ import annotations

import time

import pytest
import redis
from sqlalchemy import select

from beat.schedule import DISPATCH, RETRY
from jobs import enqueue_many
from models import CronRun, TaskEvent
from models.db import transaction
from tests.support import ledger, tasks
from tests.support.services import Cluster, wait_for
from tests.support.sweep_runs import SweepRun, overlapping, recorded

pytestmark = pytest.mark.usefixtures("clean")
FLAKY = 4
ADDS = 20
PROCESSES = 4  # two workers, two pool processes each


def concurrent(runs: list[SweepRun]) -> bool:
    """Sweeps ran in three of the four pool processes, two runs of one sweep at once."""
    return len({r.process for r in runs}) >= 3 and bool(overlapping(runs))


def burst(counter: redis.Redis, since: float) -> list[SweepRun]:
    """Until two runs of one sweep started since ``since`` overlapped, send each of two
    sweeps once per pool process, as more beats would: the two beats' ticks keep a steady
    phase apart and an idle sweep takes milliseconds, so alone they may not meet for long.
    Returns the runs since ``since``."""
    runs = [r for r in recorded(counter) if r.start >= since]
    if not overlapping(runs):
        for sweep in (DISPATCH, RETRY):
            for _ in range(PROCESSES):
                tasks.app.send_task(sweep, expires=2.0)
    return runs


def test_two_beats_and_concurrent_sweep_consumers_run_nothing_twice(
    cluster: Cluster, counter: redis.Redis
) -> None:
    second_beat = cluster.start_beat(name="beat2")
    second_worker = cluster.start_worker()
    try:
        began = time.time()
        # Four failing first attempts, not more: five failures in a row of one task name
        # open its circuit breaker (TASKLEDGER_BREAKER_THRESHOLD), which is not under test.
        # The adds come due over four seconds and the flaky ones retry after one, so the
        # dispatch and retry sweeps have work to race for while they overlap.
        handles = enqueue_many(
            tasks.app,
            [("t.flaky", (1,), {}, {}) for _ in range(FLAKY)]
            + [
                ("t.add", (1, 1), {}, {"countdown": 1 + i % 4, "session_id": f"s{i % 3}"})
                for i in range(ADDS)
            ],
        )

        def all_done() -> bool:
            burst(counter, began)
            return all(ledger.task(h.id).state == "completed" for h in handles)

        wait_for(all_done, 120, "all done", interval=0.5)
        done = time.time()

        def evidence() -> list[SweepRun] | None:
            runs = burst(counter, began)
            return runs if concurrent(runs) else None

        # The evidence that sweeps really ran at once, polled for rather than hoped for.
        runs = wait_for(
            evidence, 60, "runs of one sweep overlapping in different processes", interval=0.5
        )
    finally:
        second_beat.stop()
        cluster.workers.remove(second_worker)
        second_worker.stop()
    for h in handles:
        types = ledger.event_types(h.id)
        assert types.count("task_completed") == 1
        assert types.count("task_retry_due") == types.count("task_scheduled_for_retry")
        assert types.count("task_started") == ledger.task(h.id).attempts
        assert int(counter.get(f"runs:{h.id}") or 0) == ledger.task(h.id).attempts
    assert ledger.count_events(TaskEvent.event_type == "task_started") == FLAKY * 2 + ADDS
    pairs = overlapping(runs)
    during = [p for p in pairs if p[0].start <= done]
    acted = [p for p in during if p[0].result or p[1].result]
    print(
        f"\n{len(runs)} sweep runs in {len({r.process for r in runs})} processes; "
        f"{len(pairs)} overlapping pairs, {len(during)} while the work ran "
        f"({done - began:.1f}s), {len(acted)} of them with one run acting"
    )


def test_a_beat_without_a_cron_tasks_code_leaves_it_alone(cluster: Cluster) -> None:
    """Sent as a plain message, a cron task would reach the workers around the ledger with
    no fire recorded; a beat that does not import its code must not fire it at all."""
    from beat import django_schedules, django_setup
    from beat.cron import validate_all
    from tests.support import cron_cluster

    django_setup.migrate()
    cron_cluster.declare_queue()
    import tests.support.cron_tasks  # noqa: F401 - the definitions, in this process only

    # given: test.tick, due every second, enabled in the schedule
    django_schedules.sync(None, validate_all())
    django_schedules.set_enabled("test.tick", True)
    beat = cluster.start_beat(name="beat-without-crons")  # the suite's imports: no cron tasks
    try:
        # when: a few of its slots pass
        time.sleep(3.5)
        output = beat.output()
    finally:
        beat.stop()
        cron_cluster.disable_all_crons()
    # then: the beat said why it leaves test.tick alone, and sent nothing for it
    assert "cron task test.tick is scheduled but not defined in this beat" in output
    assert "Sending due task test.tick" not in output
    with transaction() as conn:
        fired = conn.execute(select(CronRun.id).where(CronRun.name == "test.tick")).all()
    assert fired == []
