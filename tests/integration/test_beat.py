"""Two beats at once do no harm: every sweep is idempotent and try-locked.

The sweeps ride the default queue, so two workers (two pool processes each) really
run them concurrently, and the advisory locks decide which of two overlapping sweeps
of a kind acts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from jobs import enqueue_many
from models import TaskEvent
from tests.support import ledger, tasks
from tests.support.services import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("clean")
FLAKY = 4

SUCCEEDED = re.compile(
    r"\[(\S+ \S+): INFO/(\S+)\] Task (taskledger\.sweep\.\w+)\[\S+\] succeeded in ([\d.e-]+)s"
)


def sweep_runs(logs: list[str]) -> list[tuple[str, str, datetime, datetime]]:
    """(sweep, process, start, end) of every sweep run, from the workers' logs."""
    runs = []
    for worker, text in enumerate(logs):
        for stamp, process, sweep, seconds in SUCCEEDED.findall(text):
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            runs.append(
                (sweep, f"{worker}/{process}", end - timedelta(seconds=float(seconds)), end)
            )
    return runs


def overlapping(runs: list[tuple[str, str, datetime, datetime]]) -> int:
    """Pairs of runs of the same sweep, in different processes, that overlapped in time."""
    pairs = 0
    for i, (sweep, proc, start, end) in enumerate(runs):
        for sweep2, proc2, start2, end2 in runs[i + 1 :]:
            if sweep == sweep2 and proc != proc2 and start < end2 and start2 < end:
                pairs += 1
    return pairs


def test_two_beats_and_concurrent_sweep_consumers_run_nothing_twice(
    cluster: Cluster, counter
) -> None:
    second_beat = cluster.start_beat(name="beat2")
    second_worker = cluster.start_worker()
    try:
        # Four failing first attempts, not more: five failures in a row of one task name
        # open its circuit breaker (TASKLEDGER_BREAKER_THRESHOLD), which is not under test.
        handles = enqueue_many(
            tasks.app,
            [("t.flaky", (1,), {}, {}) for _ in range(FLAKY)]
            + [
                ("t.add", (1, 1), {}, {"countdown": 1, "session_id": f"s{i % 3}"})
                for i in range(20)
            ],
        )
        wait_for(
            lambda: all(ledger.task(h.id).state == "completed" for h in handles), 60, "all done"
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
        assert int(counter.get(f"runs:{h.id}")) == ledger.task(h.id).attempts
    assert ledger.count_events(TaskEvent.event_type == "task_started") == FLAKY * 2 + 20
    runs = sweep_runs([w.output() for w in (*cluster.workers, second_worker)])
    processes = {proc for _, proc, _, _ in runs}
    overlaps = overlapping(runs)
    print(f"\n{len(runs)} sweep runs in {len(processes)} processes, {overlaps} overlapping pairs")
    assert len(processes) >= 3  # the sweeps really ran in several processes at once
    assert overlaps > 0
