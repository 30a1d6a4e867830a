"""Two beats at once do no harm: every sweep is idempotent and try-locked."""

from __future__ import annotations

import pytest

from jobs import enqueue_many
from models import TaskEvent
from tests.support import ledger, tasks
from tests.support.services import Cluster, Proc, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def test_a_second_beat_runs_nothing_twice(cluster: Cluster, counter, tmp_path) -> None:
    second = Proc(
        ["beat", "-s", str(tmp_path / "beat2"), "-l", "INFO"],
        tmp_path / "beat2.log",
        cluster.env,
        ready="beat: Starting",
    )
    try:
        handles = enqueue_many(
            tasks.app,
            [("t.flaky", (1,), {}, {}) for _ in range(30)]
            + [("t.add", (1, 1), {}, {"countdown": 1})] * 20,
        )
        wait_for(
            lambda: all(ledger.task(h.id).state == "completed" for h in handles), 60, "all done"
        )
    finally:
        second.stop()
    for h in handles:
        types = ledger.event_types(h.id)
        assert types.count("task_completed") == 1
        assert types.count("task_retry_due") == types.count("task_scheduled_for_retry")
        assert int(counter.get(f"runs:{h.id}")) == ledger.task(h.id).attempts
    assert ledger.count_events(TaskEvent.event_type == "task_started") == 30 * 2 + 20
