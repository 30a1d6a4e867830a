"""The front door: a Celery task base whose ``.delay()`` writes the row first.

    from workers.app import app
    from jobs import DurableTask, current_context

    @app.task(base=DurableTask, name="agents.summarise")
    def summarise(doc_id: str) -> dict: ...

    handle = summarise.apply_async(("d1",), session_id="agent-7", priority=5)
    handle.id          # the row id and the Celery task id
    handle.get(30)     # waits on Postgres, not on a result backend

``apply_async`` validates, commits the row and its ``task_created`` event,
then publishes (invariant 1). In the worker, ``__call__`` claims the row,
runs the function with the row's arguments and records the outcome.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task as CeleryTask
from sqlalchemy import Connection, select

from jobs import context, errors, execution
from jobs.dispatch import Dispatch, publish
from jobs.enqueue import TaskSpec, build_spec, insert
from jobs.leases import LeaseKeeper
from jobs.retry import RetryPolicy
from models import Outcome, Task, TaskState, Verification, utcnow
from models.db import transaction, with_retry
from models.settings import Settings, get_settings
from models.states import FINAL_TASK_STATES

log = logging.getLogger("taskledger.worker")

ENQUEUE_OPTIONS = frozenset(
    {
        "session_id",
        "priority",
        "countdown",
        "eta",
        "max_retries",
        "timeout",
        "queue",
        "metadata",
        "title",
    }
)
# Options Celery's canvas passes along on its own; harmless to drop.
IGNORED_OPTIONS = frozenset({"task_id", "headers", "reply_to", "parent_id", "root_id"})


class DurableTask(CeleryTask):
    """Base class for durable tasks: ``@app.task(base=DurableTask)``.

    Class-level options (set them in the decorator): ``priority`` (1-5),
    ``max_retries``, ``timeout`` (seconds), ``backoff_base``, ``backoff_cap``,
    ``backoff_jitter``, ``verifier`` (``f(result, expected) -> bool``).
    """

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False  # arguments are checked against the signature in apply_async
    max_retries: int | None = None
    priority: int | None = None
    timeout: float | None = None
    backoff_base: float | None = None
    backoff_cap: float | None = None
    backoff_jitter: bool | None = None
    verifier: Any = None

    # -- producer side -------------------------------------------------------------------

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: Any = None,
        **options: Any,
    ) -> DurableResult:
        if link is not None or link_error is not None or producer is not None or shadow is not None:
            raise errors.InvalidOption(
                "link, link_error, producer and shadow are not supported by durable tasks; "
                "use a goal for ordered steps"
            )
        spec = self.spec(args, kwargs, task_id=task_id, **options)
        enqueue_specs(self.app, [spec])
        return DurableResult(spec.id, app=self.app)

    def spec(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | uuid.UUID | None = None,
        now: datetime | None = None,
        **options: Any,
    ) -> TaskSpec:
        """Validate a call of this task without writing anything."""
        for key in list(options):
            if key in IGNORED_OPTIONS or (options[key] is None and key not in ENQUEUE_OPTIONS):
                options.pop(key)
        unknown = set(options) - ENQUEUE_OPTIONS
        if unknown:
            raise errors.InvalidOption(
                f"unsupported option(s) {sorted(unknown)} for {self.name}; "
                f"durable tasks take {sorted(ENQUEUE_OPTIONS)}"
            )
        self._check_signature(args, kwargs)
        settings = get_settings()
        options.setdefault("priority", self.priority)
        options.setdefault("max_retries", self.max_retries)
        options.setdefault("timeout", self.timeout)
        return build_spec(
            self.name,
            args,
            kwargs,
            settings=settings,
            now=now or utcnow(),
            queue=options.pop("queue", None) or self._default_queue(settings),
            task_id=task_id,
            **options,
        )

    def _check_signature(
        self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> None:
        try:
            inspect.signature(self.run).bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise errors.ArgsNotSerializable(
                f"{self.name}{inspect.signature(self.run)}: {exc}"
            ) from None

    def _default_queue(self, settings: Settings) -> str:
        if getattr(self, "queue", None):
            return str(self.queue)
        route = self.app.amqp.router.route({}, self.name)
        queue = route.get("queue")
        name = getattr(queue, "name", queue)
        return str(name or settings.default_queue)

    def retry_policy(self) -> RetryPolicy:
        settings = get_settings()
        return RetryPolicy(
            base_s=self.backoff_base or settings.retry_base_seconds,
            cap_s=self.backoff_cap if self.backoff_cap is not None else settings.retry_cap_seconds,
            jitter=self.backoff_jitter
            if self.backoff_jitter is not None
            else settings.retry_jitter,
        )

    def retry(self, *args: Any, exc: BaseException | None = None, **kwargs: Any) -> Any:
        """Celery's ``self.retry()`` maps onto taskledger's retry rules and backoff."""
        raise errors.RetryableError(str(exc) if exc else "retry requested by the task")

    # -- worker side ---------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager or not request.id:
            return self.run(*args, **kwargs)  # a plain function call: no row involved
        return self._execute(uuid.UUID(request.id), request.hostname)

    def _execute(self, task_id: uuid.UUID, hostname: str | None) -> Any:
        settings = get_settings()
        worker_id = f"{hostname or socket.gethostname()}:{os.getpid()}"
        LeaseKeeper.ensure(worker_id, settings.lease_seconds, settings.heartbeat_interval)
        attempt = with_retry(
            lambda conn: execution.claim(
                conn, task_id, worker_id=worker_id, lease_s=settings.lease_seconds, now=utcnow()
            ),
            deadline_s=30,
            what="claim",
            one_statement=True,  # execution.claim is one statement on Postgres
        )
        if attempt is None:
            log.info(
                "task %s not claimable (duplicate, stale or cancelled message); dropped", task_id
            )
            return None
        ctx = context.TaskContext(
            task_id=attempt.id,
            name=attempt.name,
            session_id=attempt.session_id,
            goal_id=attempt.goal_id,
            step_index=attempt.step_index,
            attempt=attempt.attempt,
            retries=attempt.retries,
            max_retries=attempt.max_retries,
            metadata=attempt.meta,
        )
        token = context.enter(ctx)
        try:
            finish, one_statement = self._run_attempt(attempt)
        finally:
            context.leave(ctx, token)
        dispatches = with_retry(
            finish,
            deadline_s=max(60.0, settings.lease_seconds * 4),
            what="recording the outcome",
            one_statement=one_statement,
        )
        if dispatches is None:
            log.warning(
                "task %s attempt %s: outcome discarded, the row moved on (cancelled or reaped)",
                task_id,
                attempt.attempt,
            )
            return None
        publish(self.app, dispatches, grace_s=settings.timeout_grace_seconds)
        return None

    def _run_attempt(self, attempt: execution.Attempt) -> tuple[Any, bool]:
        """Run the handler; return the database write that records how it ended, and
        whether that write is a single statement (a completion that frees no session slot
        and moves no goal)."""
        settings = get_settings()
        window = settings.session_concurrency
        outcome, error, verification = Outcome.OK, "", Verification.UNVERIFIED
        result: Any = None
        try:
            result = self.run(*attempt.args, **attempt.kwargs)
        except SoftTimeLimitExceeded:
            outcome, error = Outcome.TIMEOUT, f"soft time limit of {attempt.timeout_s}s exceeded"
        except errors.PermanentError as exc:
            outcome, error = Outcome.PERMANENT, _describe(exc)
        except Exception as exc:
            outcome, error = Outcome.ERROR, _describe(exc)
        else:
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                outcome, error = Outcome.PERMANENT, f"result is not JSON-serialisable: {exc}"
        if outcome is Outcome.OK and self.verifier is not None:
            verification = self._verify(result, attempt)
            if verification is Verification.FAILED:
                outcome, error = Outcome.VERIFICATION, "verifier rejected the result"
        if outcome is Outcome.OK:
            alone = attempt.session_id is None and attempt.goal_id is None
            return lambda conn: execution.complete(
                conn,
                attempt,
                result=result,
                verification=verification,
                now=utcnow(),
                default_window=window,
            ), alone
        log.info("task %s attempt %s failed: %s: %s", attempt.id, attempt.attempt, outcome, error)
        policy = self.retry_policy()
        return lambda conn: execution.fail(
            conn,
            attempt,
            outcome=outcome,
            error=error,
            policy=policy,
            now=utcnow(),
            default_window=window,
            verification=Verification.FAILED if outcome is Outcome.VERIFICATION else None,
        ), False

    def _verify(self, result: Any, attempt: execution.Attempt) -> Verification:
        # Celery turns decorator options into class attributes, so a plain function
        # comes back bound to the task; call the function itself.
        verifier = getattr(self.verifier, "__func__", self.verifier)
        try:
            ok = verifier(result, attempt.meta.get("expected_output"))
        except Exception:
            log.warning(
                "verifier of %s raised; counting the result as unverified-failed",
                self.name,
                exc_info=True,
            )
            ok = False
        return Verification.VERIFIED if ok else Verification.FAILED


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def enqueue_specs(app: Any, specs: Sequence[TaskSpec]) -> list[uuid.UUID]:
    """Commit the rows (all or nothing), then publish what may run now."""
    settings = get_settings()
    now = utcnow()
    with transaction() as conn:
        dispatches = insert(conn, specs, now, default_window=settings.session_concurrency)
    publish_quietly(app, dispatches, settings)
    return [spec.id for spec in specs]


def publish_quietly(app: Any, dispatches: Sequence[Dispatch], settings: Settings) -> None:
    """Publish after commit. A broker outage loses nothing: the rows are queued in Postgres
    and the dispatch sweep publishes them again."""
    try:
        publish(app, dispatches, grace_s=settings.timeout_grace_seconds)
    except Exception:
        log.warning(
            "publishing %d message(s) failed; the dispatch sweep will retry",
            len(dispatches),
            exc_info=True,
        )


def durable_task(app: Any, name: str) -> DurableTask:
    """The registered durable task called ``name``, or UnknownTask."""
    task = app.tasks.get(name)
    if task is None:
        app.loader.import_default_modules()  # TASKLEDGER_IMPORTS, as a worker would
        task = app.tasks.get(name)
    if not isinstance(task, DurableTask):
        known = sorted(n for n, t in app.tasks.items() if isinstance(t, DurableTask))
        raise errors.UnknownTask(
            f"unknown task {name!r}: no durable task of that name is registered "
            f"(known: {', '.join(known) or 'none'}; modules load from TASKLEDGER_IMPORTS)"
        )
    return task


def enqueue(
    app: Any,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> DurableResult:
    """Enqueue by registered name (for producers that do not import the task)."""
    return durable_task(app, name).apply_async(args, kwargs, **options)


def enqueue_many(
    app: Any, calls: Sequence[tuple[str, Sequence[Any], Mapping[str, Any], Mapping[str, Any]]]
) -> list[DurableResult]:
    """Seed 004's batch enqueue: ``(name, args, kwargs, options)`` each; one transaction."""
    now = utcnow()
    specs = [
        durable_task(app, name).spec(args, kwargs, now=now, **dict(options))
        for name, args, kwargs, options in calls
    ]
    return [DurableResult(i, app=app) for i in enqueue_specs(app, specs)]


class DurableResult:
    """A handle on a durable task, read from Postgres (there is no result backend)."""

    def __init__(self, task_id: uuid.UUID | str, app: Any = None) -> None:
        self.uuid = task_id if isinstance(task_id, uuid.UUID) else uuid.UUID(str(task_id))
        self.id = str(self.uuid)
        self.app = app

    task_id = property(lambda self: self.id)

    def __repr__(self) -> str:
        return f"<DurableResult {self.id}>"

    def refresh(self) -> Any:
        with transaction() as conn:
            return _load(conn, self.uuid)

    @property
    def state(self) -> TaskState:
        return TaskState(self.refresh().state)

    status = state

    def ready(self) -> bool:
        return self.state in FINAL_TASK_STATES

    def successful(self) -> bool:
        return self.state is TaskState.COMPLETED

    def failed(self) -> bool:
        return self.state is TaskState.FAILED

    @property
    def result(self) -> Any:
        return self.refresh().result

    def get(
        self, timeout: float | None = None, interval: float = 0.1, propagate: bool = True
    ) -> Any:
        """Wait until the task is final (seed 002's sync mode). Raises on failure or cancel."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.refresh()
            if row.state in FINAL_TASK_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.TaskTimeout(f"task {self.id} is still {row.state} after {timeout}s")
            time.sleep(interval)
        if propagate and row.state is TaskState.FAILED:
            raise errors.TaskFailed(f"task {self.id} failed: {row.last_error}")
        if propagate and row.state is TaskState.CANCELLED:
            raise errors.TaskCancelled(f"task {self.id} was cancelled")
        return row.result

    wait = get


def _load(conn: Connection, task_id: uuid.UUID) -> Any:
    row = conn.execute(
        select(Task.state, Task.result, Task.last_error).where(Task.id == task_id)
    ).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    return row
