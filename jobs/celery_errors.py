"""The errors that are also Celery's: ``AsyncResult.get()`` users catch Celery's classes.

Imported on first use through ``jobs.errors`` (which names them as its own), so that
importing ``jobs.errors`` does not load Celery.
"""

from __future__ import annotations

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError

from jobs.errors import TaskledgerError


class TaskCancelled(TaskledgerError, TaskRevokedError):
    """The task was cancelled (Celery's REVOKED: also a ``celery.exceptions.TaskRevokedError``)."""


class TaskTimeout(TaskledgerError, CeleryTimeoutError):
    """The task did not finish within the time the caller was willing to wait (also a
    ``celery.exceptions.TimeoutError``, what ``AsyncResult.get(timeout=)`` raises)."""


# Their home is ``jobs.errors`` for tracebacks and pickling (it resolves them lazily).
TaskCancelled.__module__ = TaskTimeout.__module__ = "jobs.errors"
