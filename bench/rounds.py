"""One round of the side-by-side comparison, run in a fresh process by ``bench/run.py``:

    python -m bench.rounds raw|taskledger '{"n": 3000, ...}'

Settings and Celery apps are read at import time, so each round is its own process
with its own environment (``bench/run.py`` sets the URLs). Prints one JSON line.

raw: a ``.delay()`` loop of N no-ops, the drain of those N by a fresh worker, then
enqueue-to-start latency at a steady rate (the shared reference, ``raw_celery.py``,
measured the same way). taskledger: batch enqueue of N (``enqueue_many``), a
``.delay()`` loop, the drain of the N with the full audit trail (verified), then
the latency at the same rate.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.procs import Worker, children, cpu_delta, cpu_seconds, exit_on_sigterm, wait_for

LOGS = Path(os.environ.get("BENCH_LOGS", "/tmp"))
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT", "600"))
QUEUE = "taskledger"
DELAY_QUEUE = "taskledger.bench-delay"  # declared, never consumed: the drain sees exactly N


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def latency_figures(lat_s: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in lat_s]
    return {
        "latency_n": len(ms),
        "latency_p50_ms": round(statistics.median(ms), 2),
        "latency_p99_ms": round(percentile(ms, 0.99), 2),
    }


def paced(rate: float, seconds: float, send: Callable[[int], None]) -> int:
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)
    return total


def command_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def pg_backends(admin: psycopg.Connection[Any], db: str, exclude: int) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (db, exclude)
    ).fetchall()
    return [int(r[0]) for r in rows]


def xact_commits(admin: psycopg.Connection[Any], db: str) -> int:
    row = admin.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)
    ).fetchone()
    return int(row[0]) if row else 0


# -- raw Celery --------------------------------------------------------------------------


def raw_round(p: dict[str, Any]) -> dict[str, Any]:
    from bench.raw_app import noop

    broker = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])  # same db as raw:done
    broker.flushdb()
    n = p["n"]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for _ in range(n):
        noop.delay()
    out["delay_per_s"] = round(n / (time.perf_counter() - t0))

    broker.config_resetstat()
    worker = Worker.worker("bench.raw_app", dict(os.environ), LOGS / "raw-worker.log")
    polls = 0
    try:
        first = cpu0 = None
        t0 = time.perf_counter()
        while True:
            done = int(broker.get("raw:done") or 0)
            polls += 1
            now = time.perf_counter()
            if done and first is None:
                first, cpu0 = now, cpu_seconds([worker.pid, *children(worker.pid)])
            if done >= n:
                cpu1 = cpu_seconds([worker.pid, *children(worker.pid)])
                break
            if now - t0 > DRAIN_TIMEOUT_S or not worker.alive():
                raise SystemExit(f"raw drain stalled at {done} of {n}; see {worker.log_path}")
            time.sleep(0.005)
        assert first is not None and cpu0 is not None
        out["drain_per_s"] = round(n / (now - first))
        out["worker_cpu_ms_per_task"] = round(cpu_delta(cpu0, cpu1) * 1000 / n, 3)
        out["consumer_cpu_ms_per_task"] = round(
            (cpu1.get(worker.pid, 0) - cpu0.get(worker.pid, 0)) * 1000 / n, 3
        )
        # The task's own INCR is raw's way of counting (kept in: it is the reference's).
        out["redis_commands_per_task"] = round((command_calls(broker) - polls - 1) / n, 2)

        broker.delete("raw:lat", "raw:done")
        total = paced(p["rate"], p["seconds"], lambda _: noop.delay(time.time()))
        wait_for(lambda: int(broker.get("raw:done") or 0) >= total, 120, "raw latency probes")
        lat = [float(x) for x in broker.lrange("raw:lat", 0, -1)]
        out.update(latency_figures(lat))
    finally:
        worker.stop()
        broker.flushdb()
    return out


# -- taskledger ----------------------------------------------------------------------------


def truncate_all() -> None:
    """Every table but alembic's: each round starts from an empty ledger."""
    from sqlalchemy import text

    from models.db import transaction

    with transaction() as conn:
        names = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars()
        conn.execute(text(f"TRUNCATE {', '.join(names)} CASCADE"))


def fresh_ledger() -> tuple[redis.Redis, redis.Redis]:
    truncate_all()
    broker = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    counters = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])
    broker.flushdb()
    counters.flushdb()
    return broker, counters


def ledger_worker(name: str, **kw: Any) -> Worker:
    w = Worker.worker("workers.app", dict(os.environ), LOGS / f"{name}.log", **kw)
    return w


def enqueue_phase(n: int, chunk: int, delay_n: int) -> dict[str, Any]:
    from bench.tasks import noop
    from jobs import enqueue_many
    from workers.app import app

    call: tuple[str, tuple[()], dict[str, Any], dict[str, Any]] = ("bench.noop", (), {}, {})
    t0 = time.perf_counter()
    left = n
    while left > 0:
        size = min(chunk, left)
        enqueue_many(app, [call] * size)
        left -= size
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(delay_n):
        noop.apply_async(queue=DELAY_QUEUE)  # what .delay() calls
    delay_s = time.perf_counter() - t0
    return {
        "batch_per_s": round(n / batch_s),
        "delay_per_s": round(delay_n / delay_s) if delay_n else None,
    }


def drain(n: int, broker: redis.Redis, worker_name: str = "tl-worker") -> dict[str, Any]:
    """Start a worker on the full queue; first to last completion, CPU, statements,
    transactions and Redis commands per task. The worker is stopped at the end, so its
    pool processes report their statement counts and its backends flush their stats."""
    db_url = os.environ["TASKLEDGER_DATABASE_URL"]
    db = os.environ["BENCH_DB_NAME"]
    out: dict[str, Any] = {}
    broker.delete("taskledger:bench:statements", "taskledger:bench:commits")
    with psycopg.connect(os.environ["BENCH_ADMIN_URL"], autocommit=True) as admin:
        time.sleep(0.5)  # closed backends flush their stats
        commits0 = xact_commits(admin, db)
        broker.config_resetstat()
        worker = ledger_worker(worker_name, queues=QUEUE)
        polls = 1
        try:
            with psycopg.connect(db_url, autocommit=True) as poller:
                me = poller.info.backend_pid
                first = None
                t0 = time.perf_counter()
                while True:
                    row = poller.execute(
                        "SELECT count(*) FROM tasks WHERE state = 'completed'"
                    ).fetchone()
                    polls += 1
                    now = time.perf_counter()
                    done = int(row[0]) if row else 0
                    if done and first is None:
                        first = now
                        w0 = cpu_seconds([worker.pid, *children(worker.pid)])
                        pg0 = cpu_seconds(pg_backends(admin, db, me))
                    if done >= n:
                        w1 = cpu_seconds([worker.pid, *children(worker.pid)])
                        pg1 = cpu_seconds(pg_backends(admin, db, me))
                        redis_calls = command_calls(broker)
                        break
                    if now - t0 > DRAIN_TIMEOUT_S or not worker.alive():
                        raise SystemExit(f"drain stalled at {done} of {n}; see {worker.log_path}")
                    time.sleep(0.02)
        finally:
            worker.stop()
        assert first is not None
        out["drain_polled_per_s"] = round(n / (now - first))
        out["worker_cpu_ms_per_task"] = round(cpu_delta(w0, w1) * 1000 / n, 3)
        out["consumer_cpu_ms_per_task"] = round(
            (w1.get(worker.pid, 0) - w0.get(worker.pid, 0)) * 1000 / n, 3
        )
        out["child_cpu_ms_per_task"] = round(
            out["worker_cpu_ms_per_task"] - out["consumer_cpu_ms_per_task"], 3
        )
        out["postgres_cpu_ms_per_task"] = round(cpu_delta(pg0, pg1) * 1000 / n, 3)
        out["redis_commands_per_task"] = round(redis_calls / n, 2)
        time.sleep(1.0)
        # Includes the worker's start-up and shutdown transactions (a handful per process).
        out["pg_commits_per_task"] = round((xact_commits(admin, db) - commits0 - polls) / n, 2)
    statements = broker.get("taskledger:bench:statements")
    out["sql_statements_per_task"] = round(int(statements) / n, 2) if statements else None
    with psycopg.connect(db_url, autocommit=True) as conn:
        out["verification"] = verify(conn, n)
        span = out["verification"].pop("finished_span_s")
    out["drain_per_s"] = round(n / span) if span else out["drain_polled_per_s"]
    return out


def verify(conn: psycopg.Connection[Any], n: int) -> dict[str, Any]:
    """Every task completed exactly once, with its audit events."""

    def one(sql: str) -> Any:
        row = conn.execute(sql, (QUEUE,)).fetchone()
        return row[0] if row else None

    completed = one("SELECT count(*) FROM tasks WHERE queue = %s AND state = 'completed'")
    attempts = one("SELECT coalesce(sum(attempts), 0) FROM tasks WHERE queue = %s")
    events = {
        kind: one(
            "SELECT count(*) FROM task_events e JOIN tasks t ON t.id = e.task_id "
            f"WHERE t.queue = %s AND e.event_type = '{kind}'"
        )
        for kind in ("task_started", "task_completed")
    }
    span = one(
        "SELECT extract(epoch FROM max(finished_at) - min(finished_at)) FROM tasks WHERE queue = %s"
    )
    ok = completed == n and attempts == n and all(v == n for v in events.values())
    return {"ok": ok, "completed": completed, "attempts": int(attempts), **events,
            "finished_span_s": float(span) if span else None}  # fmt: skip


def latency_phase(p: dict[str, Any], counters: redis.Redis) -> dict[str, Any]:
    from bench.tasks import stamp

    # Warm up the fresh worker (pool processes connect on their first task), then measure.
    paced(50, 0.4, lambda _: stamp.delay(time.time(), key="bench:warm"))
    wait_for(lambda: counters.llen("bench:warm") >= 20, 60, "the worker to warm up")
    counters.delete("bench:lat")
    total = paced(p["rate"], p["seconds"], lambda _: stamp.delay(time.time()))
    wait_for(lambda: counters.llen("bench:lat") >= total, 120, "latency probes")
    return latency_figures([float(x) for x in counters.lrange("bench:lat", 0, -1)])


def taskledger_round(p: dict[str, Any]) -> dict[str, Any]:
    broker, counters = fresh_ledger()
    n = p["n"]
    out = enqueue_phase(n, p["chunk"], p["delay_n"])
    from models.db import dispose_engines

    dispose_engines()  # our backends flush their pg_stat counters before the baseline
    out.update(drain(n, broker))
    if p.get("seconds"):
        worker = ledger_worker("tl-latency-worker", queues=QUEUE)
        try:
            out.update(latency_phase(p, counters))
        finally:
            worker.stop()
    broker.flushdb()
    return out


SCENARIOS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw": raw_round,
    "taskledger": taskledger_round,
}


def main() -> None:
    exit_on_sigterm()
    name, params = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    if name not in SCENARIOS:
        from bench import scenarios

        SCENARIOS.update(scenarios.SCENARIOS)
    result = SCENARIOS[name](params)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
