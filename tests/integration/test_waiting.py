"""Waiting for a task: woken by LISTEN/NOTIFY, not a tight poll; errors and timeouts."""

from __future__ import annotations

import statistics
import time

import pytest

from jobs import errors
from jobs.enqueue import enqueue
from jobs.waiting import enqueue_and_wait, wait_for_final
from models import TaskState
from tests.integration.safety_helpers import settings_env
from tests.support import ledger
from tests.support.services import Cluster
from workers.app import app

__all__ = ["settings_env"]


def test_enqueue_and_wait_returns_the_result(cluster: Cluster, clean: None) -> None:
    assert enqueue_and_wait(app, "s.pay", [7], {"to": "x"}, timeout=30) == {"paid": 7, "to": "x"}


def test_a_failure_raises_task_failed(cluster: Cluster, clean: None) -> None:
    with pytest.raises(errors.TaskFailed, match="bad input"):
        enqueue_and_wait(app, "t.permanent", timeout=30)


def test_timeout_leaves_the_task_running(cluster: Cluster, clean: None) -> None:
    handle = enqueue(app, "s.work", [3.0], {"label": "long"})
    started = time.monotonic()
    with pytest.raises(errors.TaskTimeout, match="keeps running"):
        wait_for_final(handle.uuid, 0.5)
    assert 0.45 < time.monotonic() - started < 2.0
    assert ledger.task(handle.id).state in {TaskState.QUEUED, TaskState.RUNNING}
    assert wait_for_final(handle.uuid, 30).state is TaskState.COMPLETED


def test_wake_up_latency(cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch) -> None:
    # given: a fallback poll of 5 s, so only a notification can wake a waiter quickly
    settings_env.setenv("TASKLEDGER_WAIT_POLL_SECONDS", "5")
    latencies = []
    for i in range(30):
        handle = enqueue(app, "s.work", [0.1], {"label": f"w{i}"})
        row = wait_for_final(handle.uuid, 30)
        woke = time.time()
        latencies.append(woke - row.finished_at.timestamp())
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"\nwait wake-up latency over {len(latencies)} tasks: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms (fallback poll 5 s)"
    )
    assert p50 < 1.0  # far below the 5 s poll: woken by the notification
