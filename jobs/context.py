"""What a running handler can see of itself: ``jobs.current_context()``."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    # per-attempt resources (the abortable HTTP clients) and what closes them at the end
    resources: dict[str, Any] = field(default_factory=dict, repr=False)
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.logger = logging.LoggerAdapter(
            log, {"task_id": str(self.task_id), "task_name": self.name, "attempt": self.attempt}
        )

    @property
    def http(self) -> Any:
        """An ``httpx.Client`` whose in-flight requests abort the moment the task is cancelled."""
        from jobs.abortable_http import client_for

        return client_for(self, asynchronous=False)

    @property
    def async_http(self) -> Any:
        """An ``httpx.AsyncClient`` whose in-flight requests abort on cancel."""
        from jobs.abortable_http import client_for

        return client_for(self, asynchronous=True)

    def charge(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        """Report usage (model tokens, money) against the session's budget (jobs/budgets.py)."""
        if self.metadata.get("local"):
            return  # a direct call: no row to charge
        from jobs.budgets import charge

        charge(self.task_id, self.session_id, tokens=tokens, cost=cost, goal_id=self.goal_id)

    def raise_if_cancelled(self) -> None:
        """Stop here if the task was cancelled (call it between steps of long work)."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled")


_current: ContextVar[TaskContext | None] = ContextVar("taskledger_context", default=None)

# Cancellation events of the attempts running in this process, by task id.
_running: dict[uuid.UUID, threading.Event] = {}
# Attempts whose handler has returned and whose outcome is being recorded: their leases
# are still renewed, so a Postgres outage at the end of a task does not let them lapse.
_recording: set[uuid.UUID] = set()
_running_lock = threading.Lock()
# Cancelled code that ignores its event is ended by this, ``grace_s`` after the cancel
# (set by the worker in processes it may terminate: workers/cancel.py).
_terminator: tuple[Callable[[uuid.UUID], None], float] | None = None


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
    for close in ctx.closers:
        try:
            close()
        except Exception:
            log.warning("closing a resource of task %s failed", ctx.task_id, exc_info=True)
    with _running_lock:
        _running.pop(ctx.task_id, None)


def running_ids() -> list[uuid.UUID]:
    with _running_lock:
        return list(_running)


def held_ids() -> list[uuid.UUID]:
    """Attempts whose leases this process keeps: running, or recording their outcome."""
    with _running_lock:
        return list(_running.keys() | _recording)


@contextmanager
def recording(task_id: uuid.UUID) -> Iterator[None]:
    """Keep the attempt's lease while its outcome is written (however long that takes)."""
    with _running_lock:
        _recording.add(task_id)
    try:
        yield
    finally:
        with _running_lock:
            _recording.discard(task_id)


def set_terminator(terminate: Callable[[uuid.UUID], None] | None, grace_s: float = 0.0) -> None:
    global _terminator
    _terminator = None if terminate is None else (terminate, grace_s)


def signal_cancel(task_ids: list[uuid.UUID] | list[str]) -> int:
    """Set the cancellation event of each listed attempt running in this process; if it
    is still running after the grace, have it terminated."""
    hit = 0
    with _running_lock:
        for raw in task_ids:
            task_id = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
            event = _running.get(task_id)
            if event is not None:
                if not event.is_set() and _terminator is not None:
                    _arm(task_id, event, *_terminator)
                event.set()
                hit += 1
    return hit


def _arm(
    task_id: uuid.UUID,
    event: threading.Event,
    terminate: Callable[[uuid.UUID], None],
    grace_s: float,
) -> None:
    def check() -> None:
        with _running_lock:
            still_running = _running.get(task_id) is event  # the same attempt, not a later one
        if still_running:
            terminate(task_id)

    timer = threading.Timer(grace_s, check)
    timer.daemon = True
    timer.start()
