"""An example agent handler for markdown task lists (``taskledger lists``).

Load it in the workers and the CLI with ``TASKLEDGER_IMPORTS=examples.agent``, then::

    taskledger lists load examples/tasks.md --handler agent.work
    taskledger lists start examples/tasks.md

Each item runs as this durable task with the item's id, description, section,
priority ("P1".."P4") and the list's path. A real agent would plan and call its
tools here; this one works through a few steps, checking for cancellation
between them (``taskledger lists stop`` and ``skip`` use it).
"""

from __future__ import annotations

import time
from typing import Any

from jobs import DurableTask, PermanentError, current_context
from workers.app import app

STEP_SECONDS = {"P1": 0.6, "P2": 0.5, "P3": 0.4, "P4": 0.3}


@app.task(base=DurableTask, name="agent.work", max_retries=2, timeout=600)
def work(item_id: str, description: str, section: str, priority: str, list_path: str) -> Any:
    ctx = current_context()
    title = description.splitlines()[0]
    ctx.logger.info("working on %s (%s, %s): %s", item_id, priority, section or "-", title)
    if "(impossible)" in title:
        raise PermanentError(f"{item_id} cannot be done as written")  # fails the item, no retry
    notes = []
    for step in ("read the context", "make the change", "check the result"):
        ctx.raise_if_cancelled()  # a stop or skip reaches the agent between steps
        time.sleep(STEP_SECONDS.get(priority, 0.4))
        notes.append(step)
    return {"item_id": item_id, "attempt": ctx.attempt, "steps": notes}
