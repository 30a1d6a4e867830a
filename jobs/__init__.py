"""The goal/task domain: state machine, retries, dispatch window, goals, the durable task."""

from jobs.context import TaskContext, current_context
from jobs.durable import DurableResult, DurableTask, enqueue, enqueue_many
from jobs.errors import (
    InvalidTaskInput,
    InvalidTransition,
    NotFound,
    PermanentError,
    RetryableError,
    TaskCancelled,
    TaskFailed,
)

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
    "enqueue",
    "enqueue_many",
]
