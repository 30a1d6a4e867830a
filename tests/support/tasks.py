"""Durable tasks the integration tests run in real worker processes.

Executions are counted in Redis (db from TEST_COUNTER_URL), apart from the
broker, so a test can tell how many times a handler really ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_failure, task_retry, task_success

from jobs import DurableTask, PermanentError, current_context
from tests.support import sweep_runs  # noqa: F401 - its signal receivers record sweep runs
from workers.app import app

_counter: redis.Redis | None = None


def counter() -> redis.Redis:
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["TEST_COUNTER_URL"])
    return _counter


def _ran() -> int:
    ctx = current_context()
    counter().rpush(f"ran:{ctx.task_id}", ctx.attempt)
    return int(counter().incr(f"runs:{ctx.task_id}"))


@app.task(base=DurableTask, name="t.noop")
def noop() -> None:
    return None


@app.task(base=DurableTask, name="t.add")
def add(a: int, b: int) -> int:
    _ran()
    return a + b


@app.task(base=DurableTask, name="t.sleep")
def sleep(seconds: float, label: str = "") -> dict[str, Any]:
    """Sleeps in small steps, honouring cancellation."""
    runs = _ran()
    ctx = current_context()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled.is_set():
            counter().set(f"cancel-seen:{ctx.task_id}", time.time())
            ctx.raise_if_cancelled()
        time.sleep(0.005)
    return {"label": label, "runs": runs, "pid": os.getpid()}


@app.task(base=DurableTask, name="t.flaky", backoff_base=1.0)
def flaky(fail_times: int) -> int:
    _ran()
    ctx = current_context()
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return ctx.attempt


@app.task(base=DurableTask, name="t.always_fail", backoff_base=0.2)
def always_fail() -> None:
    _ran()
    raise RuntimeError("always fails")


@app.task(base=DurableTask, name="t.permanent", backoff_base=0.2)
def permanent() -> None:
    _ran()
    raise PermanentError("bad input: retrying cannot help")


@app.task(base=DurableTask, name="t.step", backoff_base=0.2)
def step(label: str, fail_key: str | None = None) -> str:
    """A goal step; fails permanently while Redis key ``fail_key`` is set."""
    _ran()
    counter().rpush("steps", label)
    if fail_key and counter().get(fail_key):
        raise PermanentError(f"step {label} cannot proceed")
    return label


def _matches_expected(result: Any, expected: Any) -> bool:
    return bool(result == expected)


@app.task(base=DurableTask, name="t.answer", backoff_base=0.2, verifier=_matches_expected)
def answer() -> int:
    """Answers wrong on the first attempt; the verifier catches it."""
    _ran()
    return 41 if current_context().attempt == 1 else 42


@app.task(base=DurableTask, name="t.stubborn", backoff_base=0.2)
def stubborn(seconds: float) -> None:
    """Ignores the soft time limit, so only the hard limit can stop it."""
    from billiard.exceptions import SoftTimeLimitExceeded

    _ran()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            counter().set(f"soft-ignored:{current_context().task_id}", 1)


# -- Celery's doors (tests/integration/test_celery_doors.py, test_canvas.py) ---------------


class Boom(Exception):
    """A handler's own exception type: Celery's FAILURE must carry it."""


@app.task(base=DurableTask, name="t.boom", backoff_base=0.2)
def boom(message: str) -> None:
    _ran()
    raise Boom(message)


@app.task(base=DurableTask, name="t.retry_self", bind=True)
def retry_self(self: Any, countdown: float, fail_times: int, max_retries: int) -> int:
    """Celery's own retry idiom; records what ``self.request.retries`` said each time."""
    _ran()
    counter().rpush(f"request-retries:{self.request.id}", self.request.retries)
    if self.request.retries < fail_times:
        raise self.retry(
            exc=ValueError(f"not yet ({self.request.retries})"),
            countdown=countdown,
            max_retries=max_retries,
        )
    return int(self.request.retries)


@app.task(base=DurableTask, name="t.concat")
def concat(previous: Any, suffix: str) -> str:
    """A chain step: Celery prepends the previous step's result."""
    _ran()
    return f"{previous}{suffix}"


# A durable beat entry, switched on for the beat process of one test.
if os.environ.get("TEST_DURABLE_BEAT_ENTRY"):
    app.conf.beat_schedule = {
        **app.conf.beat_schedule,
        "test-durable-tick": {"task": "t.add", "schedule": 0.5, "args": (20, 22)},
    }


@app.task(name="t.plain")
def plain(x: Any = None) -> Any:
    """A plain Celery task (not durable): canvas must refuse to mix it in."""
    return x


# What Celery's signals tell receivers in the worker (Sentry's integration listens the same way).
@task_retry.connect
def _on_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    exc = getattr(reason, "exc", None)
    counter().rpush(f"signals:{request.id}", f"retry {type(exc).__name__}: {exc}")


@task_failure.connect
def _on_failure(task_id: Any = None, exception: Any = None, **_: Any) -> None:
    cls = type(exception)
    counter().rpush(f"signals:{task_id}", f"failure {cls.__module__}.{cls.__name__}: {exception}")


@task_success.connect
def _on_success(sender: Any = None, **_: Any) -> None:
    counter().rpush(f"signals:{sender.request.id}", "success")
