"""The benchmark's task: a durable no-op, so the drain measures taskledger's own overhead."""

from jobs import DurableTask
from workers.app import app


@app.task(base=DurableTask, name="bench.noop")
def noop() -> None:
    return None
