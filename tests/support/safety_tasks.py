"""Durable tasks for the agent-safety tests (policy, approvals, breaker, abort of I/O)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jobs import DurableTask, current_context
from tests.support.tasks import counter
from workers.app import app


def _seen(payload: Any) -> None:
    ctx = current_context()
    counter().set(f"seen:{ctx.task_id}", json.dumps(payload))
    counter().incr(f"runs:{ctx.task_id}")


@app.task(base=DurableTask, name="s.pay")
def pay(amount: int, to: str = "") -> dict[str, Any]:
    _seen({"amount": amount, "to": to})
    return {"paid": amount, "to": to}


@app.task(base=DurableTask, name="s.login")
def login(user: str, api_key: str, options: dict[str, Any] | None = None) -> int:
    """Logs its arguments, as careless handlers do: a redacted value must not appear."""
    current_context().logger.warning("login called with %s %s %s", user, api_key, options)
    _seen({"user": user, "api_key": api_key, "options": options})
    return len(api_key)


@app.task(base=DurableTask, name="s.fetch", max_retries=3, backoff_base=0.2)
def fetch(url: str) -> int:
    """Reads a (slow) URL with the task's abortable client."""
    ctx = current_context()
    counter().incr(f"runs:{ctx.task_id}")
    counter().set(f"fetch-start:{ctx.task_id}", time.time())
    try:
        return len(ctx.http.get(url, timeout=30).content)
    finally:
        counter().set(f"fetch-end:{ctx.task_id}", time.time())


@app.task(base=DurableTask, name="s.afetch", max_retries=3, backoff_base=0.2)
def afetch(url: str) -> int:
    ctx = current_context()
    counter().incr(f"runs:{ctx.task_id}")
    counter().set(f"fetch-start:{ctx.task_id}", time.time())

    async def go() -> int:
        response = await ctx.async_http.get(url, timeout=30)
        return len(response.content)

    try:
        return asyncio.run(go())
    finally:
        counter().set(f"fetch-end:{ctx.task_id}", time.time())


@app.task(
    base=DurableTask,
    name="s.fragile",
    max_retries=0,
    breaker_threshold=3,
    breaker_cooldown=2.0,
)
def fragile(label: str) -> str:
    """Fails while the Redis key ``fragile:down`` is set; records when each attempt ran."""
    ctx = current_context()
    counter().rpush("fragile:runs", f"{label}:{time.time()}")
    counter().incr(f"runs:{ctx.task_id}")
    if counter().get("fragile:down"):
        raise RuntimeError("downstream is down")
    return label


@app.task(base=DurableTask, name="s.work")
def work(seconds: float, label: str = "") -> str:
    ctx = current_context()
    counter().rpush("work:started", label or str(ctx.task_id))
    counter().incr(f"runs:{ctx.task_id}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.01)
    return label
