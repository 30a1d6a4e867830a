"""Run as Celery's docs say: plain `celery -A workers.app worker` and `... beat` are a
complete deployment (sweeps on the default queue), also `worker -B` and `--autoscale`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import enqueue_many
from models import Task, TaskEvent, TaskState
from tests.support import ledger, services, tasks
from tests.support.services import Cluster, Proc, wait_for

pytestmark = [pytest.mark.usefixtures("clean"), pytest.mark.faults]


@pytest.fixture()
def bare(cluster: Cluster) -> Iterator[Cluster]:
    """The session cluster stopped (its worker and beat), restarted afterwards."""
    cluster.stop_workers()
    if cluster.beat is not None:
        cluster.beat.stop()
    try:
        yield cluster
    finally:
        cluster.beat = cluster.start_beat(name=f"beat-{os.urandom(3).hex()}")
        cluster.start_worker()


def plain(args: list[str], tmp: Path, name: str) -> Proc:
    """Exactly `celery -A workers.app <args>`: no queue, pool or log flags."""
    env = dict(os.environ, PYTHONPATH=str(services.ROOT), TASKLEDGER_SWEEPS_QUEUE="")
    return Proc(args, tmp / f"{name}.log", env, ready=None, cwd=tmp)


def workload() -> list:
    """Sessions wider than their window (dispatch sweep), flaky tasks (retry sweep)."""
    calls = [("t.sleep", (0.5, f"s{i}"), {}, {"session_id": f"agent-{i % 4}"}) for i in range(24)]
    calls += [("t.flaky", (1,), {}, {}) for _ in range(6)]
    return enqueue_many(tasks.app, calls)


def completed_once(handles: list) -> bool:
    per_task = ledger.completed_events_per_task()
    return all(per_task.get(h.uuid) == 1 for h in handles) and len(per_task) == len(handles)


def test_plain_worker_and_beat_survive_sigkill_and_flushall(bare: Cluster, tmp_path) -> None:
    # given: exactly the two documented commands
    beat = plain(["beat"], tmp_path, "beat")
    worker = plain(["worker"], tmp_path, "worker1")
    try:
        handles = workload()
        wait_for(lambda: ledger.count(Task.state == TaskState.COMPLETED) >= 4, 60, "4 completed")
        # when: the worker dies mid-run, then Redis forgets everything
        wait_for(lambda: ledger.count(Task.state == TaskState.RUNNING) >= 1, 30, "one running")
        worker.kill()
        services.broker_redis().flushall()
        worker = plain(["worker"], tmp_path, "worker2")
        # then: every task completes, exactly once
        wait_for(lambda: completed_once(handles), 150, "every task completed exactly once")
    finally:
        worker.stop()
        beat.stop()
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0
    lost = ledger.count_events(TaskEvent.payload["outcome"].astext == "worker_lost")
    print(f"\nplain deployment: {len(handles)} tasks, {lost} attempt(s) lost to the SIGKILL")


def test_worker_with_embedded_beat(bare: Cluster, tmp_path) -> None:
    worker = plain(["worker", "-B"], tmp_path, "worker-b")
    try:
        handles = workload()
        wait_for(lambda: completed_once(handles), 120, "every task completed exactly once")
    finally:
        worker.stop()
    retried = [h for h in handles if ledger.task(h.id).retries]
    assert len(retried) == 6  # the flaky ones went through the retry sweep


def test_autoscaling_worker_runs_the_sweeps(bare: Cluster, tmp_path) -> None:
    beat = plain(["beat"], tmp_path, "beat")
    worker = plain(["worker", "--autoscale=4,1"], tmp_path, "worker-auto")
    try:
        handles = workload()
        wait_for(lambda: completed_once(handles), 120, "every task completed exactly once")
    finally:
        worker.stop()
        beat.stop()
    assert ledger.count(Task.state != TaskState.COMPLETED) == 0
