"""Durable tasks the MCP tests serve as tools (loaded through TASKLEDGER_IMPORTS)."""

from __future__ import annotations

import time

from jobs import DurableTask, current_context
from tests.support.tasks import counter
from workers.app import app


@app.task(base=DurableTask, name="mcp.add", mcp=True)
def add(a: int, b: int = 10) -> dict[str, int]:
    """Add two integers and return their sum."""
    return {"sum": a + b}


@app.task(base=DurableTask, name="mcp.slow", mcp=True)
def slow(seconds: float, label: str = "slow") -> str:
    """Sleep for a while, watching for cancellation, then return the label."""
    ctx = current_context()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled.wait(0.05):
            counter().set(f"saw-cancel:{ctx.task_id}", 1)
            ctx.raise_if_cancelled()
    return label


@app.task(base=DurableTask, name="mcp.fail", mcp=True, max_retries=0)
def fail(reason: str) -> None:
    """Always fail with the given reason."""
    raise ValueError(reason)


@app.task(base=DurableTask, name="mcp.hidden")
def hidden() -> str:
    """Not an MCP tool unless TASKLEDGER_MCP_TOOLS names it."""
    return "hidden"


@app.task(base=DurableTask, name="mcp.guarded", mcp=True)
def guarded(amount: int) -> dict[str, int]:
    """Move an amount (a policy rule asks a person first)."""
    return {"moved": amount}


@app.task(base=DurableTask, name="mcp.forbidden", mcp=True)
def forbidden() -> str:
    """A tool the policy blocks."""
    return "ran"
