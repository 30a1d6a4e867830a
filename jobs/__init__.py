"""The goal/task domain: state machine, retries, dispatch window, goals, the durable task.

The names below load on first use: a CLI command that only reads the ledger
imports ``jobs.queries`` without paying for Celery and the enqueue path.
Enqueue by registered name with ``jobs.enqueue.enqueue(app, name, ...)``
(``jobs.enqueue`` is the module).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.context import TaskContext, current_context
    from jobs.durable import DurableTask
    from jobs.enqueue import enqueue_many
    from jobs.errors import (
        InvalidTaskInput,
        InvalidTransition,
        NotFound,
        PermanentError,
        RetryableError,
        TaskCancelled,
        TaskFailed,
    )
    from jobs.results import DurableResult

_HOMES = {
    "DurableResult": "jobs.results",
    "DurableTask": "jobs.durable",
    "InvalidTaskInput": "jobs.errors",
    "InvalidTransition": "jobs.errors",
    "NotFound": "jobs.errors",
    "PermanentError": "jobs.errors",
    "RetryableError": "jobs.errors",
    "TaskCancelled": "jobs.errors",
    "TaskContext": "jobs.context",
    "TaskFailed": "jobs.errors",
    "current_context": "jobs.context",
    "enqueue_many": "jobs.enqueue",
}
__all__ = [
    "DurableResult",
    "DurableTask",
    "InvalidTaskInput",
    "InvalidTransition",
    "NotFound",
    "PermanentError",
    "RetryableError",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "current_context",
    "enqueue_many",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
