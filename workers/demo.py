"""Demo tasks for ``taskledger demo``: a small research goal with a flaky step."""

from __future__ import annotations

from typing import Any

from jobs import DurableTask, RetryableError, current_context
from workers.app import app


def _non_empty(result: Any, _expected: Any) -> bool:
    return bool(result and result.get("summary"))


@app.task(base=DurableTask, name="demo.plan")
def plan(topic: str) -> dict[str, Any]:
    ctx = current_context()
    ctx.logger.info("planning research on %s", topic)
    return {"topic": topic, "sources": ["docs", "issues", "forum"]}


@app.task(base=DurableTask, name="demo.fetch", backoff_base=1.0)
def fetch(source: str, fail_times: int = 2) -> dict[str, Any]:
    """Fails the first ``fail_times`` attempts, like a flaky upstream, then succeeds."""
    ctx = current_context()
    if ctx.attempt <= fail_times:
        raise RetryableError(f"{source}: upstream answered 503 (attempt {ctx.attempt})")
    return {"source": source, "documents": 3}


@app.task(base=DurableTask, name="demo.summarise", verifier=_non_empty)
def summarise(topic: str) -> dict[str, Any]:
    return {"summary": f"Three sources agree on {topic}."}
