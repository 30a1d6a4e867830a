"""A task list survives its worker being SIGKILLed and the whole stack restarting mid-list:
it finishes, and every item completes exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from jobs import tasklists
from jobs.tasklists import store
from jobs.tasklists.status import list_status
from models import Task, TaskEvent, TaskState
from models.db import dispose_engines, transaction
from models.task_list import ListStatus
from tests.support import list_tasks, services
from tests.support.services import Cluster, wait_for

pytestmark = [pytest.mark.usefixtures("clean"), pytest.mark.faults]
APP = list_tasks.app


def completions_per_item(path: Path) -> dict[str, int]:
    """task_completed events per item id, over every task the list's items ever had."""
    canonical = store.canonical_path(path)
    with transaction() as conn:
        rows = conn.execute(
            select(Task.kwargs["item_id"].astext)
            .join(TaskEvent, TaskEvent.task_id == Task.id)
            .where(
                Task.kwargs["list_path"].astext == canonical,
                TaskEvent.event_type == "task_completed",
            )
        ).scalars()
        return dict(Counter(rows))


def list_done(path: Path) -> bool:
    try:
        with transaction() as conn:
            r = list_status(conn, store.canonical_path(path))
    except OperationalError:
        return False  # Postgres is restarting
    return r.lst.status is ListStatus.STOPPED and all(i.final for i in r.items)


def running_item(path: Path) -> str | None:
    with transaction() as conn:
        r = list_status(conn, store.canonical_path(path))
    running = [i.item_id for i in r.items if i.state is TaskState.RUNNING]
    return running[0] if running else None


def make_list(tmp_path: Path, counter, n: int, seconds: float) -> Path:
    path = tmp_path / "long.md"
    path.write_text("# Long\n" + "".join(f"- [ ] L-{i:02d}: step {i}\n" for i in range(n)))
    for i in range(n):
        counter.set(f"sleep:L-{i:02d}", seconds)
    tasklists.load(APP, path, handler="tl.item", max_retries=5)
    tasklists.start(APP, path)
    return path


def test_sigkill_of_the_worker_mid_item(cluster: Cluster, counter, tmp_path: Path) -> None:
    path = make_list(tmp_path, counter, 6, 0.8)
    wait_for(lambda: running_item(path) == "L-02", 60, "L-02 running")

    victim = cluster.workers.pop(0)
    victim.kill()  # the worker and its children, no goodbye
    cluster.start_worker()

    wait_for(lambda: list_done(path), 120, "the list to finish")
    assert completions_per_item(path) == {f"L-{i:02d}": 1 for i in range(6)}
    with transaction() as conn:
        lost = conn.execute(
            select(func.count())
            .select_from(TaskEvent)
            .where(
                TaskEvent.event_type == "task_failed",
                TaskEvent.payload["outcome"].astext == "worker_lost",
            )
        ).scalar_one()
    assert lost == 1  # the attempt running at the kill was retried per the retry rules
    canonical = store.canonical_path(path)
    runs = [counter.lrange(f"order:{canonical}", 0, -1)]
    assert [x.decode() for x in runs[0]].count("L-02") == 2


def test_restart_of_every_process_mid_list(cluster: Cluster, counter, tmp_path: Path) -> None:
    path = make_list(tmp_path, counter, 8, 0.6)
    wait_for(lambda: running_item(path) == "L-03", 60, "L-03 running")

    # everything goes down at once: worker, sweeps worker, beat, Postgres, Redis
    for proc in [*cluster.workers, cluster.sweeper, cluster.beat]:
        if proc is not None:
            proc.kill()
    cluster.workers.clear()
    services.SERVERS.restart_postgres()
    services.SERVERS.restart_redis()
    dispose_engines()
    for i in range(8):  # the counter Redis restarted empty: steer the items again
        counter.set(f"sleep:L-{i:02d}", 0.6)

    cluster.start_sweeps()
    cluster.start_worker()

    wait_for(lambda: list_done(path), 180, "the list to finish after the restart")
    assert completions_per_item(path) == {f"L-{i:02d}": 1 for i in range(8)}
    with transaction() as conn:
        r = list_status(conn, store.canonical_path(path))
    assert r.counts["completed"] == 8 and r.counts["failed"] == 0
