"""Celery's result API over the ledger: a result backend that reads Postgres.

``workers/app.py`` sets it as the app's ``result_backend``, so with no Redis
result store and no extra service ``AsyncResult(id).get()/.state/.result``,
``celery -A workers.app result ID`` and Flower's result view read the task's
row. It never writes: ``jobs/transitions.py`` stays the only writer of state.

Ledger state        Celery state
pending_approval,   PENDING
blocked, queued     PENDING (RETRY when queued again after a failed attempt)
running             STARTED
retry_wait          RETRY    (result: the error of the failed attempt)
completed           SUCCESS  (result: the stored JSON result)
failed              FAILURE  (result: the task's own exception type and message)
cancelled, skipped  REVOKED  (``get()`` raises jobs.TaskCancelled, a TaskRevokedError)
"""

from __future__ import annotations

import builtins
import re
import uuid
from typing import Any

from celery import states
from celery.backends.base import BaseBackend
from celery.result import AsyncResult
from sqlalchemy import Row, select

from jobs import errors
from models import Outcome, Task, TaskState
from models.db import transaction

CELERY_STATE = {
    TaskState.PENDING_APPROVAL: states.PENDING,
    TaskState.BLOCKED: states.PENDING,
    TaskState.QUEUED: states.PENDING,
    TaskState.RUNNING: states.STARTED,
    TaskState.RETRY_WAIT: states.RETRY,
    TaskState.COMPLETED: states.SUCCESS,
    TaskState.FAILED: states.FAILURE,
    TaskState.CANCELLED: states.REVOKED,
    TaskState.SKIPPED: states.REVOKED,
}

# Attempts that ended without an exception of the handler's own: what Celery would raise.
OUTCOME_ERRORS = {
    Outcome.WORKER_LOST: ("WorkerLostError", "billiard.exceptions"),
    Outcome.TIMEOUT: ("TimeLimitExceeded", "billiard.exceptions"),
    Outcome.VERIFICATION: ("VerificationFailed", "jobs.errors"),
}
_TYPED = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.DOTALL)
META_COLUMNS = (
    Task.id,
    Task.name,
    Task.state,
    Task.args,
    Task.kwargs,
    Task.queue,
    Task.result,
    Task.last_error,
    Task.last_outcome,
    Task.retries,
    Task.attempts,
    Task.worker_id,
    Task.finished_at,
)


def describe_error(exc: BaseException) -> str:
    """How a handler's exception is stored in ``last_error``: ``Type: message`` for
    builtins, ``module.Type: message`` otherwise, so the type can be raised again."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    # Celery rebuilds an exception from its args; one string argument is the message.
    message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return f"{name}: {message}"


def error_of(last_error: str | None, last_outcome: str | None) -> dict[str, Any]:
    """The stored error in Celery's serialised-exception form (``exception_to_python``
    raises it again as the original type when its module is loaded, as Celery does)."""
    text = last_error or "the task failed"
    match = _TYPED.match(text)
    if match:
        path, message = match.groups()
        module, _, name = path.rpartition(".")
        builtin = getattr(builtins, path, None)
        if module or (isinstance(builtin, type) and issubclass(builtin, BaseException)):
            return {
                "exc_type": name,
                "exc_module": module or "builtins",
                "exc_message": (message,),
            }
    if last_outcome in OUTCOME_ERRORS:
        name, module = OUTCOME_ERRORS[Outcome(last_outcome)]
        return {"exc_type": name, "exc_module": module, "exc_message": (text,)}
    return {"exc_type": "TaskFailed", "exc_module": "jobs.errors", "exc_message": (text,)}


def celery_state(row: Any) -> str:
    if row.state is TaskState.QUEUED and row.retries > 0:
        return states.RETRY  # waiting to run again after a failed attempt
    return CELERY_STATE[row.state]


def meta_for(task_id: str, row: Any) -> dict[str, Any]:
    """Celery's task meta for a row (None: no such task, which Celery calls PENDING)."""
    if row is None:
        return {"task_id": task_id, "status": states.PENDING, "result": None, "traceback": None}
    status = celery_state(row)
    result: Any = None
    traceback = None
    if status == states.SUCCESS:
        result = row.result
    elif status in (states.FAILURE, states.RETRY) and row.last_error:
        result = error_of(row.last_error, row.last_outcome)
        traceback = row.last_error
    elif status == states.REVOKED:
        result = errors.TaskCancelled(f"task {task_id} was {row.state}")
    elif status == states.STARTED:
        result = {"hostname": row.worker_id}
    return {
        "task_id": task_id,
        "status": status,
        "result": result,
        "traceback": traceback,
        "children": [],
        "date_done": row.finished_at,
        "name": row.name,
        "args": row.args,
        "kwargs": row.kwargs,
        "queue": row.queue,
        "retries": row.retries,
        "worker": row.worker_id,
    }


def load_row(task_id: str) -> Row[Any] | None:
    try:
        key = uuid.UUID(str(task_id))
    except ValueError:
        return None  # not a ledger id (a plain Celery task's): unknown, so PENDING
    with transaction() as conn:
        return conn.execute(select(*META_COLUMNS).where(Task.id == key)).one_or_none()


class LedgerBackend(BaseBackend):
    """Reads task results and states from the ledger; stores nothing (the ledger already
    has the outcome when Celery would store it)."""

    supports_native_join = False

    def __init__(self, app: Any = None, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.url = url

    def as_uri(self, include_password: bool = False) -> str:
        return "taskledger://postgres"

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        return dict(self.meta_from_decoded(meta_for(task_id, load_row(task_id))))

    def store_result(self, task_id: Any, result: Any, state: str, *args: Any, **kw: Any) -> Any:
        return result  # transitions.py wrote the row and its event already

    def _store_result(self, task_id: Any, result: Any, state: str, *a: Any, **kw: Any) -> Any:
        return result

    def forget(self, task_id: Any) -> None:
        """The audit trail is kept (retention removes it); forgetting drops only the cache."""
        self._cache.pop(task_id, None)

    def _forget(self, task_id: Any) -> None:
        return None

    def ensure_chords_allowed(self) -> None:
        raise errors.UnsupportedCanvas(
            "chord is not supported for durable tasks: use a goal (jobs.operations.create_goal) "
            "or chain(...) whose last step takes the previous results"
        )

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Any = None,
    ) -> dict[str, Any]:
        """Wait on the ledger (jobs.waiting); ``TaskTimeout`` is Celery's TimeoutError."""
        from jobs.waiting import wait_for_final

        try:
            key = uuid.UUID(str(task_id))
        except ValueError:
            return dict(super().wait_for(task_id, timeout, interval, no_ack, on_interval))
        try:
            wait_for_final(key, timeout)
        except errors.NotFound:
            # Not written yet or not a ledger task: Celery waits on PENDING until the timeout.
            return dict(super().wait_for(task_id, timeout, interval, no_ack, on_interval))
        return self._get_task_meta_for(task_id)


class DurableResult(AsyncResult):
    """A durable task's handle: Celery's ``AsyncResult`` over the ledger backend.

    ``.get(timeout=)`` raises ``celery.exceptions.TimeoutError`` (``jobs.TaskTimeout``)
    when time runs out, the task's own exception when it failed, ``jobs.TaskCancelled``
    (a ``TaskRevokedError``) when it was cancelled; ``propagate=False`` returns the error.
    """

    def __init__(
        self,
        id: uuid.UUID | str,
        backend: Any = None,
        task_name: str | None = None,
        app: Any = None,
        parent: Any = None,
    ) -> None:
        super().__init__(str(id), backend=backend, task_name=task_name, app=app, parent=parent)
        if not isinstance(self.backend, LedgerBackend):
            self.backend: Any = LedgerBackend(self.app)
        self.uuid = uuid.UUID(str(id))

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<DurableResult {self.id}>"

    def refresh(self) -> Row[Any]:
        row = load_row(self.id)
        if row is None:
            raise errors.NotFound(f"no task {self.id}")
        return row

    @property
    def ledger_state(self) -> TaskState:
        """The ledger's own state (finer than Celery's)."""
        return TaskState(self.refresh().state)
