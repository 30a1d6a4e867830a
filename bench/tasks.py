"""The benchmark's durable tasks. What the driver measures they record in Redis
(BENCH_COUNTER_URL, a database of the bench's own Redis), never in Postgres: the
ledger's rows are what is being measured."""

from __future__ import annotations

import os
import time

import redis

from jobs import DurableTask, RetryableError, current_context
from models.broker import redis_client
from workers.app import app


def counters() -> redis.Redis:
    """The driver's counters (BENCH_COUNTER_URL, a redis-py URL set by bench/run.py)."""
    return redis_client(os.environ["BENCH_COUNTER_URL"])


@app.task(base=DurableTask, name="bench.noop")
def noop() -> None:
    return None


@app.task(base=DurableTask, name="bench.stamp")
def stamp(sent_at: float, key: str = "bench:lat") -> None:
    """Enqueue-to-start latency: the handler's start minus the producer's clock before
    ``.delay()`` (the same clock: one machine)."""
    counters().rpush(key, time.time() - sent_at)


@app.task(base=DurableTask, name="bench.sleep")
def sleep(seconds: float, key: str = "") -> None:
    if key:
        counters().rpush(key, f"{current_context().task_id} {time.time()}")
    time.sleep(seconds)


@app.task(base=DurableTask, name="bench.watch", timeout=60)
def watch() -> None:
    """Wait for the cancellation signal; record when the handler noticed it."""
    ctx = current_context()
    r = counters()
    r.set(f"bench:running:{ctx.task_id}", time.time())
    if ctx.cancelled.wait(30):
        r.set(f"bench:noticed:{ctx.task_id}", time.time())


@app.task(base=DurableTask, name="bench.flaky", max_retries=3, backoff_base=1.0)
def flaky() -> None:
    """Fails its first attempt; the retry's start time is compared with its backoff_until."""
    ctx = current_context()
    if ctx.attempt == 1:
        raise RetryableError("first attempt fails on purpose")
    counters().set(f"bench:retry_start:{ctx.task_id}", time.time())


@app.task(base=DurableTask, name="bench.pid")
def pid() -> int:
    return os.getpid()
