"""taskledger-only scenarios (issue 11, 4-8): fairness, bulk cancel, cancel-to-signal,
retry punctuality, worker RSS. Each runs in its own process (``bench/rounds.py``) with
its own worker(s), and returns one dict of figures."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from bench.procs import Worker, children, rss_kib, wait_for
from bench.rounds import QUEUE, fresh_ledger, latency_figures, ledger_worker, paced, percentile


def _db() -> psycopg.Connection[Any]:
    import os

    return psycopg.connect(os.environ["TASKLEDGER_DATABASE_URL"], autocommit=True)


def _count(sql: str, *params: Any) -> int:
    with _db() as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _enqueue(calls: list[tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]]) -> None:
    from jobs import enqueue_many
    from workers.app import app

    for i in range(0, len(calls), 1000):
        enqueue_many(app, calls[i : i + 1000])


def _warm(worker: Worker, counters: redis.Redis) -> None:
    """Wait until the worker runs tasks (its pool processes have connected)."""
    from bench.tasks import stamp

    for _ in range(6):
        stamp.delay(time.time(), key="bench:warm")
    wait_for(lambda: counters.llen("bench:warm") >= 6, 60, f"warm-up ({worker.log_path})")


def fairness(p: dict[str, Any]) -> dict[str, Any]:
    """Session A has thousands of 50 ms tasks queued; B enqueues one task every 100 ms.
    B's start latency (enqueue call to handler start) is what fairness means here."""
    from bench.tasks import stamp
    from jobs.bulk import cancel_where
    from workers.app import app

    _, counters = fresh_ledger()
    worker = ledger_worker("fair-worker", queues=QUEUE)
    try:
        _warm(worker, counters)
        a: list[Any] = [("bench.sleep", (p["a_seconds"],), {}, {"session_id": "A"})] * p["a_tasks"]
        _enqueue(a)
        wait_for(
            lambda: (
                _count("SELECT count(*) FROM tasks WHERE session_id='A' AND state='completed'") >= 4
            ),
            60,
            "A to start",
        )
        sent = paced(
            1 / p["b_every"],
            p["b_seconds"],
            lambda _: stamp.apply_async((time.time(), "bench:b"), session_id="B"),
        )
        wait_for(lambda: counters.llen("bench:b") >= sent, 120, "B's tasks")
        a_done = _count("SELECT count(*) FROM tasks WHERE session_id='A' AND state='completed'")
        cancel_where(app, by="bench", session_id="A")  # the rest of A: not needed
    finally:
        worker.stop()
    lat = latency_figures([float(x) for x in counters.lrange("bench:b", 0, -1)])
    return {
        "a_tasks": p["a_tasks"],
        "a_task_ms": p["a_seconds"] * 1000,
        "b_n": sent,
        "a_completed_meanwhile": a_done,
        "b_p50_ms": lat["latency_p50_ms"],
        "b_p99_ms": lat["latency_p99_ms"],
    }


def bulk_cancel(p: dict[str, Any]) -> dict[str, Any]:
    """N queued 50 ms tasks, their messages already in Redis, a worker running them;
    cancel them all in one call; then let the worker consume every leftover message."""
    from jobs.bulk import cancel_where
    from workers.app import app
    from workers.broker import queue_sizes

    _, counters = fresh_ledger()
    worker = ledger_worker("cancel-worker", queues=QUEUE)
    try:
        _warm(worker, counters)
        _enqueue([("bench.sleep", (0.05,), {}, {})] * p["n"])
        wait_for(
            lambda: (
                _count("SELECT count(*) FROM tasks WHERE state='completed' AND name='bench.sleep'")
                >= 2
            ),
            60,
            "tasks to run",
        )
        t0 = time.perf_counter()
        cancelled = cancel_where(app, by="bench", name="bench.sleep")
        cancel_s = time.perf_counter() - t0
        after = datetime.now(UTC)  # events carry the workers' clock, which is this one
        # Every leftover message reaches the worker, whose claim refuses it. The worker
        # drops them at ~40/s on a loaded machine: 120 s failed the run at 5,000.
        drain_s = max(120.0, p["n"] / 10)
        wait_for(lambda: queue_sizes(app, [QUEUE])[QUEUE] == 0, drain_s, "the queue to empty")
        time.sleep(0.5)
        started_after = _count(
            "SELECT count(*) FROM task_events WHERE event_type='task_started' AND created_at > %s",
            after,
        )
    finally:
        worker.stop()
    return {
        "n": p["n"],
        "cancelled": cancelled,
        "cancel_s": round(cancel_s, 4),
        "started_after": started_after,
    }


def cancel_signal(p: dict[str, Any]) -> dict[str, Any]:
    """Cancel a running task; time until its handler sees ``current_context().cancelled``."""
    from bench.tasks import watch
    from jobs.operations import cancel_task
    from workers.app import app

    _, counters = fresh_ledger()
    worker = ledger_worker("signal-worker", queues=QUEUE)
    lat = []
    try:
        _warm(worker, counters)
        for _ in range(p["n"]):
            task_id = uuid.UUID(watch.delay().id)
            running, noticed_key = f"bench:running:{task_id}", f"bench:noticed:{task_id}"
            wait_for(lambda k=running: counters.get(k), 30, "the task to run")
            time.sleep(0.02)
            t0 = time.time()
            cancel_task(app, task_id)
            noticed = wait_for(lambda k=noticed_key: counters.get(k), 30, "the signal")
            lat.append(float(noticed) - t0)  # type: ignore[arg-type]
    finally:
        worker.stop()
    ms = [x * 1000 for x in lat]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
    }


def db_clock_offset() -> float:
    """Database clock minus this process's clock, in seconds. They differ here (~29 s
    on this machine, whose processes do not all share one clock), and the backoff is
    counted on the database's. Best of 5 round trips."""
    best = (float("inf"), 0.0)
    with _db() as conn:
        for _ in range(5):
            t0 = time.time()
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            t1 = time.time()
            assert row is not None
            best = min(best, (t1 - t0, float(row[0]) - (t0 + t1) / 2))
    return best[1]


def retry(p: dict[str, Any]) -> dict[str, Any]:
    """Tasks fail once with a 1 s backoff; |retry start - backoff_until|. Needs beat (the
    retry sweep, every TASKLEDGER_RETRY_INTERVAL_SECONDS, default 0.5 s)."""
    import os

    _, counters = fresh_ledger()
    logs = os.environ["BENCH_LOGS"]
    # N failures of one task name in a row would open its circuit breaker (default 5) and
    # hold the retries for its cooldown: that is the breaker working, not the retry sweep.
    os.environ["TASKLEDGER_BREAKER_THRESHOLD"] = str(10 * p["n"] + 10)
    worker = ledger_worker("retry-worker", queues=QUEUE)
    beat = Worker(
        "workers.app",
        ["beat", "-s", f"{logs}/beat-schedule", "-l", "INFO"],
        dict(os.environ),
        worker.log_path.with_name("beat.log"),
    )
    try:
        wait_for(lambda: "beat: Starting" in beat.output(), 60, "beat to start")
        _warm(worker, counters)
        _enqueue([("bench.flaky", (), {}, {})] * p["n"])
        wait_for(lambda: len(counters.keys("bench:retry_start:*")) >= p["n"], 120, "retries")
        with _db() as conn:
            rows = conn.execute(
                "SELECT task_id, payload->>'backoff_until' FROM task_events "
                "WHERE event_type = 'task_scheduled_for_retry'"
            ).fetchall()
        offset = db_clock_offset()
    finally:
        worker.stop()
        beat.stop()
    deltas = []
    for task_id, until in rows:
        start = counters.get(f"bench:retry_start:{task_id}")
        if start is not None:  # the handler's clock, moved onto the database's
            deltas.append(abs(float(start) + offset - datetime.fromisoformat(until).timestamp()))
    return {
        "n": len(deltas),
        "db_clock_offset_s": round(offset, 3),
        "p50_s": round(percentile(deltas, 0.5), 3),
        "p99_s": round(percentile(deltas, 0.99), 3),
        "max_s": round(max(deltas), 3),
    }


def rss(p: dict[str, Any]) -> dict[str, Any]:
    """Worker RSS (main process and pool children) after a warm-up, and after N more tasks."""
    _, _counters = fresh_ledger()
    worker = ledger_worker("rss-worker", queues=QUEUE)

    def total_rss() -> int:
        return sum(rss_kib(pid) for pid in [worker.pid, *children(worker.pid)])

    def completed() -> int:
        return _count("SELECT count(*) FROM tasks WHERE state='completed'")

    try:
        _enqueue([("bench.noop", (), {}, {})] * p["warmup"])
        wait_for(lambda: completed() >= p["warmup"], 300, "warm-up", interval=0.2)
        before = total_rss()
        target = p["warmup"] + p["n"]
        _enqueue([("bench.noop", (), {}, {})] * p["n"])
        wait_for(lambda: completed() >= target, 1200, "the soak", interval=0.5)
        after = total_rss()
    finally:
        worker.stop()
    return {
        "n": p["n"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "growth_pct": round((after - before) * 100 / before, 2),
    }


from bench.load import autoscale, load  # noqa: E402

SCENARIOS = {
    "fairness": fairness,
    "bulk_cancel": bulk_cancel,
    "cancel_signal": cancel_signal,
    "retry": retry,
    "rss": rss,
    "load": load,
    "autoscale": autoscale,
}
