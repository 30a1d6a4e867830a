"""What a running handler can see of itself: ``jobs.current_context()``."""

from __future__ import annotations

import logging
import threading
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import TaskCancelled

log = logging.getLogger("taskledger.task")


@dataclass
class TaskContext:
    """The running attempt. ``cancelled`` is set within a fraction of a second of a cancel."""

    task_id: uuid.UUID
    name: str
    session_id: str | None
    goal_id: uuid.UUID | None
    step_index: int | None
    attempt: int
    retries: int
    max_retries: int
    metadata: dict[str, Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    logger: logging.LoggerAdapter[logging.Logger] = field(init=False)

    def __post_init__(self) -> None:
        self.logger = logging.LoggerAdapter(
            log, {"task_id": str(self.task_id), "task_name": self.name, "attempt": self.attempt}
        )

    def raise_if_cancelled(self) -> None:
        """Stop here if the task was cancelled (call it between steps of long work)."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled")


_current: ContextVar[TaskContext | None] = ContextVar("taskledger_context", default=None)

# Cancellation events of the attempts running in this process, by task id.
_running: dict[uuid.UUID, threading.Event] = {}
_running_lock = threading.Lock()


def current_context() -> TaskContext:
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_context() is only available inside a running durable task")
    return ctx


def enter(ctx: TaskContext) -> Any:
    with _running_lock:
        _running[ctx.task_id] = ctx.cancelled
    return _current.set(ctx)


def leave(ctx: TaskContext, token: Any) -> None:
    _current.reset(token)
    with _running_lock:
        _running.pop(ctx.task_id, None)


def running_ids() -> list[uuid.UUID]:
    with _running_lock:
        return list(_running)


def signal_cancel(task_ids: list[uuid.UUID] | list[str]) -> int:
    """Set the cancellation event of each listed attempt running in this process."""
    hit = 0
    with _running_lock:
        for raw in task_ids:
            event = _running.get(raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)))
            if event is not None:
                event.set()
                hit += 1
    return hit
