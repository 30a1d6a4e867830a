"""The handler the task-list tests run items with (loaded through TASKLEDGER_IMPORTS).

Each run is recorded in the counter Redis (TEST_COUNTER_URL): ``order:{list_path}``
gets the item ids in the order they started, ``runs:{list_path}:{item_id}`` counts
runs. The test steers an item with keys: ``sleep:{item_id}`` (seconds, default
0.05), ``fail:{item_id}`` (PermanentError) and ``flaky:{item_id}`` (fails while the
attempt number is at most its value).
"""

from __future__ import annotations

import time

from jobs import DurableTask, PermanentError, current_context
from tests.support.tasks import app, counter


@app.task(base=DurableTask, name="tl.item", backoff_base=0.2, max_retries=3)
def item(item_id: str, description: str, section: str, priority: str, list_path: str) -> dict:
    ctx = current_context()
    r = counter()
    r.rpush(f"order:{list_path}", item_id)
    r.incr(f"runs:{list_path}:{item_id}")
    r.set(f"running:{list_path}:{item_id}", 1)
    try:
        seconds = float(r.get(f"sleep:{item_id}") or 0.05)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ctx.raise_if_cancelled()
            time.sleep(0.01)
        if r.get(f"fail:{item_id}"):
            raise PermanentError(f"{item_id} cannot be done")
        flaky = int(r.get(f"flaky:{item_id}") or 0)
        if ctx.attempt <= flaky:
            raise RuntimeError(f"{item_id}: transient failure on attempt {ctx.attempt}")
        r.rpush(f"done:{list_path}", item_id)
        return {"item_id": item_id, "priority": priority, "section": section}
    finally:
        r.delete(f"running:{list_path}:{item_id}")
