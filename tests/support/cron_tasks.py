"""Cron and side tasks for the scheduled-work tests (loaded via TASKLEDGER_IMPORTS in
those tests' own processes only). Everything starts disabled: each test enables what it
needs, which is also how the runtime switches are exercised."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import redis
from pydantic import BaseModel

from beat import cron, side_task
from beat.side import SideContext
from jobs import DurableTask, PermanentError, current_context
from workers.app import app

QUEUE = "taskledger.crontests"  # only the scheduled-work tests' workers consume it

_counter: redis.Redis | None = None


def counter() -> redis.Redis:
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["TEST_COUNTER_URL"])
    return _counter


def _log(key: str, **values: Any) -> None:
    counter().rpush(key, json.dumps({"t": time.time(), "pid": os.getpid(), **values}))


@cron(
    every=1, name="test.slow", queue=QUEUE, overlap="skip", enabled=False, config={"seconds": 3.0}
)
@app.task(base=DurableTask, name="cron_t.slow", max_retries=0)
def slow(config: dict[str, Any]) -> dict[str, Any]:
    """Takes 3 s on a 1 s schedule: most fires find it still running."""
    ctx = current_context()
    _log("slow", event="start", task=str(ctx.task_id))
    time.sleep(float(config["seconds"]))
    _log("slow", event="end", task=str(ctx.task_id))
    return {"slept": config["seconds"]}


class TickConfig(BaseModel):
    label: str = "a"
    repeat: int = 1


class TickResult(BaseModel):
    echo: str


@cron(
    every=1,
    name="test.tick",
    queue=QUEUE,
    enabled=False,
    config={"label": "a"},
    config_schema=TickConfig,
    result_schema=TickResult,
    tags=["tests"],
    priority=4,
)
@app.task(base=DurableTask, name="cron_t.tick", max_retries=0)
def tick(config: dict[str, Any]) -> dict[str, Any]:
    _log("tick", label=config["label"], task=str(current_context().task_id))
    return {"echo": config["label"] * config["repeat"]}


def dynamic_go() -> bool:
    return bool(counter().get("dynamic:go"))


@cron(dynamic_go, name="test.dynamic", queue=QUEUE, check_every=1, enabled=False)
@app.task(base=DurableTask, name="cron_t.dynamic", max_retries=0)
def dynamic() -> None:
    _log("dynamic")


class FlakyConfig(BaseModel):
    fail: bool = False
    seconds: float = 0.0


@cron("* * * * *", name="test.upstream", queue=QUEUE, enabled=False, config_schema=FlakyConfig)
@app.task(base=DurableTask, name="cron_t.upstream", max_retries=0)
def upstream(config: dict[str, Any]) -> str:
    time.sleep(config["seconds"])
    if config["fail"]:
        raise PermanentError("upstream told to fail")
    return "ok"


@cron("* * * * *", name="test.downstream", queue=QUEUE, enabled=False, depends_on=["test.upstream"])
@app.task(base=DurableTask, name="cron_t.downstream", max_retries=0)
def downstream() -> str:
    _log("downstream")
    return "ran"


@cron(
    every=3600,
    name="test.queued",
    queue=QUEUE,
    overlap="queue",
    enabled=False,
    config={"seconds": 2.0},
)
@app.task(base=DurableTask, name="cron_t.queued", max_retries=0)
def queued(config: dict[str, Any]) -> None:
    _log("queued", event="start", task=str(current_context().task_id))
    time.sleep(float(config["seconds"]))
    _log("queued", event="end", task=str(current_context().task_id))


@cron("* * * * *", name="test.minutely", queue=QUEUE, enabled=False)
@app.task(base=DurableTask, name="cron_t.minutely", max_retries=0)
def minutely() -> None:
    _log("minutely", task=str(current_context().task_id))


@cron("*/5 * * * *", name="test.five_minutes", queue=QUEUE, timezone="Europe/Paris", enabled=False)
@app.task(base=DurableTask, name="cron_t.five_minutes", max_retries=0)
def five_minutes() -> None:
    _log("five_minutes")


# -- side tasks ------------------------------------------------------------------------


def _record_shutdown(ctx: SideContext) -> None:
    _log(f"side:{ctx.name}", event="on_shutdown")
    time.sleep(0.3)


@side_task(name="test.side.loop", on_shutdown=_record_shutdown, shutdown_timeout=5)
def loop(abort: threading.Event, ctx: SideContext) -> None:
    _log(f"side:{ctx.name}", event="start", holder=ctx.holder)
    while not abort.is_set():
        counter().set(f"side-beat:{ctx.name}", time.time())
        abort.wait(0.1)
    _log(f"side:{ctx.name}", event="aborted", holder=ctx.holder)


@side_task(name="test.side.crashy", backoff=0.5, backoff_cap=5)
def crashy(abort: threading.Event, ctx: SideContext) -> None:
    n = int(counter().incr("side-crashy-runs"))
    _log("side:test.side.crashy", event="start", run=n, restarts=ctx.restarts)
    if n <= 2:
        raise RuntimeError(f"crash number {n}")
    abort.wait()
