"""The front door: a Celery task base whose ``.delay()`` writes the row first.

    from workers.app import app
    from jobs import DurableTask, current_context

    @app.task(base=DurableTask, name="agents.summarise")
    def summarise(doc_id: str) -> dict: ...

    handle = summarise.apply_async(("d1",), session_id="agent-7", priority=5)
    handle.id          # the row id and the Celery task id
    handle.get(30)     # Celery's AsyncResult, read from Postgres (jobs/results.py)

``apply_async`` only builds the call and hands it to ``jobs.enqueue`` (validate,
one transaction, publish after commit). In the worker, ``__call__`` claims the
row, runs the function with the row's arguments, records the outcome, and then
tells Celery the same truth: a return (SUCCESS), ``Retry`` when the ledger
scheduled another attempt (RETRY, ``task_retry``), or the handler's own exception
when the task failed for good (FAILURE, ``task_failure``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn

from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task as CeleryTask
from celery.exceptions import Ignore, Retry
from sqlalchemy import Connection, select

import jobs.enqueue as front_door
from jobs import canvas, context, errors, execution, ratelimit
from jobs.cancel import cancel_task
from jobs.dispatch import publish
from jobs.enqueue import TaskSpec
from jobs.leases import LeaseKeeper
from jobs.results import DurableResult, describe_error
from jobs.retry import RetryPolicy, decide
from models import Outcome, Task, TaskState, Verification, utcnow
from models.db import transaction, with_retry
from models.settings import get_settings

log = logging.getLogger("taskledger.worker")

# Kept importable from here for callers written before jobs/enqueue.py owned them.
durable_task = front_door.durable_task
enqueue_many = front_door.enqueue_many
enqueue = front_door.enqueue
publish_quietly = front_door.publish_quietly


class RetryRequested(Exception):
    """Raised by ``DurableTask.retry`` inside a running handler; the attempt ends as a
    failure that the ledger retries after ``countdown`` (or the task's backoff)."""

    def __init__(
        self, exc: BaseException | None, countdown: float | None, max_retries: int | None
    ) -> None:
        super().__init__(str(exc) if exc else "retry requested by the task")
        self.exc = exc or errors.RetryableError("retry requested by the task")
        self.countdown = countdown
        self.max_retries = max_retries


@dataclass(frozen=True, kw_only=True)
class CountdownPolicy(RetryPolicy):
    """``self.retry(countdown=…)``: this one retry waits exactly ``countdown`` seconds."""

    countdown_s: float = 0.0

    def delay_s(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        return self.countdown_s


@dataclass(frozen=True)
class Ending:
    """How an attempt ended: the database write recording it, and what Celery is told."""

    write: Callable[[Connection], Any]
    one_statement: bool  # a completion that frees no session slot and moves no goal
    result: Any = None
    error: BaseException | None = None  # None: success
    retry_in_s: float | None = None  # set: the ledger scheduled another attempt


class DurableTask(CeleryTask):
    """Base class for durable tasks: ``@app.task(base=DurableTask)``.

    Class-level options (set them in the decorator): ``priority`` (1-5),
    ``max_retries``, ``timeout`` (seconds), ``backoff_base``, ``backoff_cap``,
    ``backoff_jitter``, ``verifier`` (``f(result, expected) -> bool``).
    """

    taskledger_durable = True  # how jobs.enqueue tells durable tasks from plain ones
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
    mcp: bool = False  # served as an MCP tool by `taskledger mcp` (mcp_server/)

    # -- producer side -------------------------------------------------------------------

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,  # beat and group pass one; the ledger publishes on its own
        link: Any = None,
        link_error: Any = None,
        shadow: Any = None,
        **options: Any,
    ) -> DurableResult:
        """Build the call and hand it to ``jobs.enqueue`` (or the canvas, for a chain or
        group of durable tasks)."""
        if link is not None or link_error is not None:
            raise errors.UnsupportedCanvas(
                "link/link_error callbacks are not supported for durable tasks: use "
                "chain(a.s(), b.s()) (it becomes a goal) or jobs.operations.create_goal"
            )
        if shadow is not None:
            raise errors.InvalidOption("shadow names are not supported for durable tasks")
        if options.pop("chord", None) is not None:
            self.app.backend.ensure_chords_allowed()  # raises UnsupportedCanvas
        steps = options.pop("chain", None)
        if steps:
            return canvas.apply_chain(self, args, kwargs, steps, task_id=task_id, **options)
        group_id = options.pop("group_id", None)
        if group_id is not None and options.get("add_to_parent") is False:
            return canvas.add_to_group(self, group_id, args, kwargs, task_id=task_id, **options)
        return front_door.enqueue_call(self, args, kwargs, task_id=task_id, **options)

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
        return front_door.prepare(self, args, kwargs, task_id=task_id, now=now, **options)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> DurableResult:
        return DurableResult(task_id, app=self.app, task_name=self.name, **kwargs)

    def retry_policy(self) -> RetryPolicy:
        settings = get_settings()
        return RetryPolicy(
            base_s=self.backoff_base or settings.retry_base_seconds,
            cap_s=self.backoff_cap if self.backoff_cap is not None else settings.retry_cap_seconds,
            jitter=self.backoff_jitter
            if self.backoff_jitter is not None
            else settings.retry_jitter,
        )

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's ``self.retry()``: the ledger records this attempt as failed and runs the
        task again after ``countdown`` (or until ``eta``; else the task's backoff), while
        ``max_retries`` (this call's, else the task's) allows. Same arguments: the row's."""
        if args is not None or kwargs is not None:
            raise errors.InvalidOption(
                "self.retry(args=, kwargs=) is not supported: a durable task retries with "
                "the arguments stored in its row"
            )
        if not _has_context() or self.request.called_directly:
            raise exc or errors.RetryableError("retry requested outside a running durable task")
        if eta is not None:
            countdown = max((eta - utcnow()).total_seconds(), 0.0)
        raise RetryRequested(exc, countdown, max_retries)

    # -- worker side ---------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager or not request.id:
            return self._run_locally(args, kwargs)
        return self._execute(request.id, request.hostname)

    def _run_locally(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """A direct call or ``apply()``: the function runs here and now, with no row,
        no retries and no lease; ``current_context()`` describes this one run."""
        if _has_context():
            return self.run(*args, **kwargs)  # called from inside another durable task
        ctx = context.TaskContext(
            task_id=uuid.uuid4(),
            name=self.name,
            session_id=None,
            goal_id=None,
            step_index=None,
            attempt=1,
            retries=0,
            max_retries=0,
            metadata={"local": True},
        )
        # Only the context variable: not registered as a running attempt, so no lease
        # renewal or cancellation listener ever looks for a row that does not exist.
        token = context._current.set(ctx)
        try:
            return self.run(*args, **kwargs)
        finally:
            context._current.reset(token)

    def _execute(self, raw_id: str, hostname: str | None) -> Any:
        settings = get_settings()
        task_id = _ledger_id(raw_id, self.name)
        worker_id = f"{hostname or socket.gethostname()}:{os.getpid()}"
        LeaseKeeper.ensure(worker_id, settings.lease_seconds, settings.heartbeat_interval)

        def claim() -> execution.Attempt | None:
            return with_retry(
                lambda conn: execution.claim(
                    conn, task_id, worker_id=worker_id, lease_s=settings.lease_seconds, now=utcnow()
                ),
                deadline_s=30,
                what="claim",
                one_statement=True,  # execution.claim is one statement on Postgres
            )

        attempt = claim() or ratelimit.claim_when_due(task_id, claim)  # near slot: wait here
        if attempt is None:
            return self._unclaimable(task_id)
        self.request.retries = attempt.retries  # Celery's view of the ledger's count
        args = attempt.args
        if canvas.CHAIN_KEY in attempt.meta:
            args = [canvas.previous_result(attempt), *args]
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
            ending = self._run_attempt(attempt, args)
        finally:
            context.leave(ctx, token)
        with context.recording(attempt.id):  # the lease is kept while the outcome is written
            dispatches = with_retry(
                ending.write,
                deadline_s=max(60.0, settings.lease_seconds * 4),
                what="recording the outcome",
                one_statement=ending.one_statement,
            )
        if dispatches is None:
            log.warning(
                "task %s attempt %s: outcome discarded, the row moved on (cancelled or reaped)",
                task_id,
                attempt.attempt,
            )
            raise Ignore()  # neither success nor failure: the ledger says what happened
        publish(self.app, dispatches, grace_s=settings.timeout_grace_seconds)
        if ending.error is None:
            return ending.result
        if ending.retry_in_s is not None:
            raise Retry(exc=ending.error, when=round(ending.retry_in_s, 3))
        raise ending.error

    def _unclaimable(self, task_id: uuid.UUID) -> NoReturn:
        """No attempt for this message: say why, loudly when no row exists at all."""
        with transaction() as conn:
            row = conn.execute(
                select(Task.state, Task.expires_at).where(Task.id == task_id)
            ).one_or_none()
        if row is None:
            raise errors.NoLedgerRow(
                f"task {task_id} ({self.name}) has no row in the ledger: its message was "
                "published around it. Enqueue durable tasks with .delay()/.apply_async(), "
                "app.send_task on the taskledger app, or jobs.enqueue; nothing ran."
            )
        now = utcnow()
        if row.state is TaskState.QUEUED and row.expires_at is not None and row.expires_at <= now:
            expire(self.app, task_id)
        log.info("task %s not claimable (duplicate, stale, expired or cancelled); dropped", task_id)
        raise Ignore()

    def _run_attempt(self, attempt: execution.Attempt, args: list[Any]) -> Ending:
        """Run the handler; return how the attempt ended."""
        settings = get_settings()
        window = settings.session_concurrency
        outcome, verification = Outcome.OK, Verification.UNVERIFIED
        error: BaseException | None = None
        policy = self.retry_policy()
        result: Any = None
        try:
            result = self.run(*args, **attempt.kwargs)
        except RetryRequested as request:
            outcome, error = Outcome.ERROR, request.exc
            if request.countdown is not None:
                policy = CountdownPolicy(countdown_s=max(float(request.countdown), 0.0))
            if request.max_retries is not None:
                attempt = replace(attempt, max_retries=int(request.max_retries))
        except SoftTimeLimitExceeded as exc:
            outcome, error = Outcome.TIMEOUT, exc
            exc.args = (f"soft time limit of {attempt.timeout_s}s exceeded",)
        except errors.PermanentError as exc:
            outcome, error = Outcome.PERMANENT, exc
        except Exception as exc:
            outcome, error = Outcome.ERROR, exc
        else:
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError) as exc:
                outcome = Outcome.PERMANENT
                error = errors.PermanentError(f"result is not JSON-serialisable: {exc}")
        if outcome is Outcome.OK and self.verifier is not None:
            verification = self._verify(result, attempt)
            if verification is Verification.FAILED:
                outcome, error = Outcome.VERIFICATION, errors.VerificationFailed()
        if error is None:
            alone = attempt.session_id is None and attempt.goal_id is None
            return Ending(
                lambda conn: execution.complete(
                    conn,
                    attempt,
                    result=result,
                    verification=verification,
                    now=utcnow(),
                    default_window=window,
                ),
                alone,
                result=result,
            )
        text = describe_error(error)
        log.info("task %s attempt %s failed: %s: %s", attempt.id, attempt.attempt, outcome, text)
        now = utcnow()
        retry = decide(
            policy,
            retries=attempt.retries,
            max_retries=attempt.max_retries,
            outcome=outcome,
            now=now,
        )
        failed = attempt
        return Ending(
            lambda conn: execution.fail(
                conn,
                failed,
                outcome=outcome,
                error=text,
                policy=policy,
                now=utcnow(),
                default_window=window,
                verification=Verification.FAILED if outcome is Outcome.VERIFICATION else None,
            ),
            False,
            error=error,
            retry_in_s=None if retry is None else retry.delay_s,
        )

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


def _ledger_id(raw_id: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw_id))
    except ValueError:
        raise errors.NoLedgerRow(
            f"message {raw_id!r} for durable task {name} has no ledger row (its id is not "
            "one the ledger issues); nothing ran"
        ) from None


def expire(app: Any, task_id: uuid.UUID) -> bool:
    """A queued task past its ``expires`` ends cancelled with reason ``expired``."""
    settings = get_settings()
    try:
        with transaction() as conn:
            _row, dispatches = cancel_task(
                conn,
                task_id,
                reason="expired",
                now=utcnow(),
                default_window=settings.session_concurrency,
            )
    except (errors.InvalidTransition, errors.NotFound):
        return False  # it moved on meanwhile (claimed, cancelled): nothing to expire
    publish_quietly(app, dispatches, settings)
    return True


def _has_context() -> bool:
    try:
        context.current_context()
    except RuntimeError:
        return False
    return True
