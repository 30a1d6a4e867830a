"""Every error taskledger raises on purpose. The docstring is the default message."""

from __future__ import annotations


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


class TaskCancelled(TaskledgerError):
    """The task was cancelled."""


class TaskTimeout(TaskledgerError):
    """The task did not finish within the time the caller was willing to wait."""
