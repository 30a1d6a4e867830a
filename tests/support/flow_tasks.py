"""Durable tasks the flow-control tests use (loaded through TASKLEDGER_IMPORTS)."""

from __future__ import annotations

import time

from jobs import DurableTask, current_context
from tests.support.tasks import counter
from workers.app import app


@app.task(base=DurableTask, name="flow.echo")
def echo(value: str) -> str:
    """Return the value (idempotency)."""
    return value


@app.task(base=DurableTask, name="flow.tick", ledger_rate_limit="5/s")
def tick(n: int) -> int:
    """A short task limited to 5 starts per second across the cluster."""
    time.sleep(0.02)
    return n


@app.task(
    base=DurableTask,
    name="flow.per_customer",
    ledger_rate_limit="1/s",
    ledger_rate_key=lambda customer, n: customer,
)
def per_customer(customer: str, n: int) -> int:
    """Limited per customer: each customer's calls start at most once a second."""
    return n


@app.task(base=DurableTask, name="flow.record")
def record(key: str, n: int) -> int:
    """Remember which call of a debounced burst ran."""
    counter().rpush(f"ran:{key}", n)
    return n


@app.task(base=DurableTask, name="flow.spend", mcp=True)
def spend(tokens: int, cost: float = 0.0) -> dict[str, float]:
    """Pretend to call a model and charge its usage to the session's budget."""
    current_context().charge(tokens=tokens, cost=cost)
    return {"tokens": tokens, "cost": cost}
