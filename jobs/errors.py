"""Every error taskledger raises on purpose. The docstring is the default message.

``TaskCancelled`` and ``TaskTimeout`` are also Celery's exceptions, so they live in
``jobs.celery_errors`` and load on first use: the CLI's read commands import this module
to report errors and must not pay for Celery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # explicit re-exports, so type checkers see the lazy names
    from jobs.celery_errors import TaskCancelled as TaskCancelled
    from jobs.celery_errors import TaskTimeout as TaskTimeout

_CELERY_ERRORS = ("TaskCancelled", "TaskTimeout")


def __getattr__(name: str) -> Any:
    if name in _CELERY_ERRORS:
        from jobs import celery_errors

        return getattr(celery_errors, name)
    raise AttributeError(f"module 'jobs.errors' has no attribute {name!r}")


class TaskledgerError(Exception):
    """Unexpected error in taskledger."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class InvalidTaskInput(TaskledgerError, ValueError):
    """The task cannot be enqueued as given; nothing was written."""


class UnknownTask(InvalidTaskInput):
    """No durable task is registered under that name."""


class InvalidPriority(InvalidTaskInput):
    """Priority must be an integer from 1 (lowest) to 5 (highest)."""


class InvalidSchedule(InvalidTaskInput):
    """countdown must be >= 0 seconds, eta an aware datetime; give one, not both."""


class ArgsNotSerializable(InvalidTaskInput):
    """Arguments must be plain JSON: str, int, float, bool, None, lists and str-keyed dicts."""


class PayloadTooLarge(InvalidTaskInput):
    """The task's arguments and metadata are larger than TASKLEDGER_MAX_PAYLOAD_BYTES."""


class InvalidOption(InvalidTaskInput):
    """An option that taskledger does not support, or a value out of range."""


class TaskAlreadyExists(InvalidTaskInput):
    """A task with that id already exists."""


class NotFound(TaskledgerError, LookupError):
    """No such task or goal."""


class InvalidTransition(TaskledgerError):
    """That state change is not allowed from the row's current state."""


class PermanentError(TaskledgerError):
    """Retrying cannot help (invalid input, missing data): fail now, without retries."""


class RetryableError(TaskledgerError):
    """A transient failure: the task is retried with backoff while retries last."""


class TaskFailed(TaskledgerError):
    """The task ended in the failed state."""


class PolicyBlocked(TaskledgerError):
    """A policy rule blocked the task: it was recorded as failed and its handler never runs."""

    def __init__(
        self, message: str | None = None, *, task_ids: list[str] | None = None, rule: str = ""
    ) -> None:
        super().__init__(message)
        self.task_ids = task_ids or []
        self.rule = rule


class InvalidPolicy(TaskledgerError):
    """The policy file (TASKLEDGER_POLICY_FILE) has an error; nothing was loaded."""


class QueueFull(TaskledgerError):
    """The session or queue is at its cap of unfinished tasks; nothing was written."""


class NotPendingApproval(InvalidTransition):
    """The task is not waiting for approval (already approved, denied or never asked)."""


# -- Celery's doors (issue 5: "One truth through every Celery door") -------------------------


class UnsupportedCanvas(InvalidTaskInput):
    """That Celery canvas is not supported for durable tasks; nothing was written."""


class QueueNotDeclared(InvalidOption):
    """The queue is not in TASKLEDGER_QUEUES, so no worker would consume it; nothing was written."""


class NoLedgerRow(TaskledgerError):
    """A message for a durable task arrived with no row in the ledger: it was published
    around the ledger (a raw send_task from another app, or a hand-made message)."""


class VerificationFailed(TaskledgerError):
    """The task's verifier rejected its result."""
