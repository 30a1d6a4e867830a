"""Seed 002's load: many sessions enqueueing at once (makespan, per-session progress,
Postgres cost per task), and ``--autoscale=8,2`` driven by the ledger's backlog."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

from bench.procs import Worker, children, cpu_delta, cpu_seconds, wait_for
from bench.rounds import LOGS, QUEUE, fresh_ledger, ledger_worker, pg_backends, xact_commits


def _enqueue_sessions(sessions: int, per_session: int, task_s: float) -> float:
    """Every session enqueues its tasks (one enqueue_many each) at the same moment, from
    its own thread; returns the wall-clock time of the start."""
    from jobs import enqueue_many
    from workers.app import app

    barrier = threading.Barrier(sessions + 1)
    errors: list[BaseException] = []

    def producer(i: int) -> None:
        calls: list[Any] = [
            ("bench.sleep", (task_s,), {}, {"session_id": f"s{i:02d}"})
        ] * per_session
        barrier.wait()
        try:
            enqueue_many(app, calls)
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    start = time.time()
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return start


def load(p: dict[str, Any]) -> dict[str, Any]:
    _, _counters = fresh_ledger()
    db, db_url = os.environ["BENCH_DB_NAME"], os.environ["TASKLEDGER_DATABASE_URL"]
    total = p["sessions"] * p["per_session"]
    with psycopg.connect(os.environ["BENCH_ADMIN_URL"], autocommit=True) as admin:
        worker = ledger_worker("load-worker", queues=QUEUE)
        try:
            with psycopg.connect(db_url, autocommit=True) as poll:

                def done() -> int:
                    row = poll.execute("SELECT count(*) FROM tasks WHERE state='completed'")
                    one = row.fetchone()
                    return int(one[0]) if one else 0

                # warm: the pool processes connect on their first task
                from bench.tasks import noop

                for _ in range(4):
                    noop.delay()
                wait_for(lambda: done() >= 4, 60, "warm-up")
                time.sleep(1.0)  # their stats flush
                commits0 = xact_commits(admin, db)
                pg0 = cpu_seconds(pg_backends(admin, db, poll.info.backend_pid))
                start = _enqueue_sessions(p["sessions"], p["per_session"], p["task_s"])
                wait_for(lambda: done() >= total + 4, 600, "the load", interval=0.05)
                pg1 = cpu_seconds(pg_backends(admin, db, poll.info.backend_pid))
                rows = poll.execute(
                    "SELECT session_id, extract(epoch FROM finished_at) FROM tasks "
                    "WHERE session_id IS NOT NULL"
                ).fetchall()
        finally:
            worker.stop()
        time.sleep(1.0)
        commits = xact_commits(admin, db) - commits0
    finished = [(s, float(t)) for s, t in rows]
    makespan = max(t for _, t in finished) - start
    half = start + makespan / 2
    progress = {f"s{i:02d}": 0 for i in range(p["sessions"])}
    for session, t in finished:
        if t <= half:
            progress[session] += 1
    low, high = min(progress.values()), max(progress.values())
    return {
        "sessions": p["sessions"],
        "tasks": total,
        "task_ms": p["task_s"] * 1000,
        "makespan_s": round(makespan, 2),
        "progress_at_half": progress,
        "progress_min": low,
        "progress_max": high,
        "progress_max_over_min": round(high / low, 2) if low else None,
        "postgres_cpu_ms_per_task": round(cpu_delta(pg0, pg1) * 1000 / total, 3),
        # all the run's transactions (enqueue, claims, completions, releases, the polls)
        "pg_commits_per_task": round(commits / total, 2),
    }


def autoscale(p: dict[str, Any]) -> dict[str, Any]:
    """A worker started with ``--autoscale=8,2`` (workers/autoscale.py sees the ledger's
    backlog); its pool size sampled every 0.5 s while 20 sessions' work drains, then idle."""
    fresh_ledger()
    env = dict(os.environ, AUTOSCALE_KEEPALIVE=str(p["keepalive"]))
    total = p["sessions"] * p["per_session"]
    worker = Worker.worker(
        "workers.app", env, LOGS / "autoscale-worker.log", queues=QUEUE, extra=("--autoscale=8,2",)
    )
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()

    def sample() -> None:
        samples.append((round(time.monotonic() - t0, 1), len(children(worker.pid))))

    try:
        with psycopg.connect(os.environ["TASKLEDGER_DATABASE_URL"], autocommit=True) as poll:

            def done() -> int:
                one = poll.execute("SELECT count(*) FROM tasks WHERE state='completed'").fetchone()
                return int(one[0]) if one else 0

            wait_for(lambda: len(children(worker.pid)) >= 2, 60, "the pool")
            for _ in range(4):
                sample()
                time.sleep(0.5)
            _enqueue_sessions(p["sessions"], p["per_session"], p["task_s"])
            deadline = time.monotonic() + 900
            while done() < total and time.monotonic() < deadline and worker.alive():
                sample()
                time.sleep(0.5)
            drained_at = round(time.monotonic() - t0, 1)
            idle_until = time.monotonic() + p["keepalive"] * 3 + 5
            while time.monotonic() < idle_until:
                sample()
                time.sleep(0.5)
            completed = done()
    finally:
        worker.stop()
    sizes = [n for _, n in samples]
    compact: list[int] = []
    for _, n in samples:
        if not compact or compact[-1] != n:
            compact.append(n)
    return {
        "tasks": total,
        "completed": completed,
        "drained_at_s": drained_at,
        "pool_samples": samples,
        "pool_sizes_compact": " → ".join(map(str, compact)),
        "max_pool": max(sizes),
        "final_pool": sizes[-1],
        "grew_and_shrank": max(sizes) > 2 and sizes[-1] <= 2,
    }
