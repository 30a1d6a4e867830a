"""Durable tasks that misbehave on purpose, for the fault tests.

Each records in the counter Redis (TEST_COUNTER_URL) what really happened in
the worker, so a test can tell a run from a recorded outcome.
"""

from __future__ import annotations

import os
import time

from jobs import DurableTask, current_context
from tests.support.tasks import _ran, counter
from workers.app import app


@app.task(base=DurableTask, name="t.deaf", backoff_base=0.2)
def deaf(seconds: float) -> int:
    """Ignores its cancellation signal entirely; only termination can stop it early."""
    _ran()
    ctx = current_context()
    counter().set(f"pid:{ctx.task_id}", os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    counter().set(f"finished:{ctx.task_id}", time.time())
    return os.getpid()


@app.task(base=DurableTask, name="t.slow_once", backoff_base=0.2)
def slow_once(seconds: float) -> float:
    """Sleeps without looking at Postgres: it may finish while the database is away."""
    _ran()
    time.sleep(seconds)
    counter().set(f"finished:{current_context().task_id}", time.time())
    return seconds
