"""Enqueueing: the one module that owns "validate, write, publish".

Every way in (``DurableTask.apply_async``/``.delay()``, ``app.send_task`` by name,
``enqueue``/``enqueue_many``, beat entries, canvas) ends in ``submit``:

    validate (``prepare`` -> ``build_spec``)              nothing written on bad input
    -> one transaction: ``insert`` (policy hook: ``jobs.admission``), reserve the window
    -> publish after commit (``publish_quietly``; a lost publish is the sweep's job)

Bad input raises an ``InvalidTaskInput`` subclass before anything is written.
A batch is all or nothing (seed 004's atomic batch enqueue).

The parts live next door and are importable from here as before: ``jobs.taskspec``
(``TaskSpec``, ``build_spec`` and its checks), ``jobs.calls`` (``prepare``, the options
and finding a durable task by name), ``jobs.pipelined`` (the publish: one Redis round
trip for a whole batch).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from jobs import errors, flow
from jobs.calls import (
    ENQUEUE_OPTIONS,
    IGNORED_OPTIONS,
    check_queue_declared,
    durable_task,
    find_durable,
    is_durable,
    prepare,
)
from jobs.dispatch import Dispatch, release
from jobs.pipelined import publish_pipelined
from jobs.taskspec import (
    MAX_RETRIES_LIMIT,
    NAME_LIMIT,
    TaskSpec,
    _check_json,
    _json_problem,
    build_spec,
    check_priority,
)
from models import TaskState, utcnow
from models.db import single_statement, transaction
from models.settings import Settings, get_settings

__all__ = [
    "ENQUEUE_OPTIONS",
    "IGNORED_OPTIONS",
    "MAX_RETRIES_LIMIT",
    "NAME_LIMIT",
    "TaskSpec",
    "_check_json",
    "_json_problem",
    "build_spec",
    "check_priority",
    "check_queue_declared",
    "durable_task",
    "enqueue",
    "enqueue_call",
    "enqueue_many",
    "find_durable",
    "insert",
    "is_durable",
    "prepare",
    "publish_quietly",
    "submit",
]

log = logging.getLogger("taskledger.enqueue")


def insert(
    conn: Connection, specs: Sequence[TaskSpec], now: datetime, *, default_window: int
) -> list[Dispatch]:
    """Write the rows and their events; return the messages to publish after commit."""
    from jobs import admission  # owner, caps, policy; it imports TaskSpec from here

    try:
        specs = admission.create(conn, specs, now)  # the policy hook: admits, then writes
    except IntegrityError as exc:
        raise errors.TaskAlreadyExists(
            "a task with one of these ids already exists; nothing was enqueued"
        ) from exc
    out = [s.dispatch() for s in specs if s.publishes_at_once and s.scheduled_for <= now]
    sessions = {s.session_id for s in specs if s.state is TaskState.QUEUED}
    out.extend(release(conn, sessions=sessions, now=now, default_window=default_window))
    return out


def submit(app: Any, specs: Sequence[TaskSpec]) -> list[uuid.UUID]:
    """Commit the rows (all or nothing), then publish what may run now. Returns each call's
    task id (an idempotency key already taken answers with its holder's)."""
    settings = get_settings()
    now = utcnow()
    with single_statement() if _one_statement(specs, settings) else transaction() as conn:
        specs, ids = flow.admit(conn, specs, now)  # the flow-control hook (jobs/flow.py)
        dispatches = insert(conn, specs, now, default_window=settings.session_concurrency)
    publish_quietly(app, dispatches, settings)
    return ids


def _one_statement(specs: Sequence[TaskSpec], settings: Settings) -> bool:
    """True when the hooks below write nothing but the rows (no flow controls, sessions,
    caps or policy rules: the common ``.delay()``), so the whole transaction is the one
    statement of ``create_tasks``; it then commits on its own, one round trip instead of
    BEGIN, statement, COMMIT (tests/integration/test_enqueue_statements.py counts them)."""
    from jobs import policy

    return (
        settings.max_unfinished_per_session is None
        and settings.max_unfinished_per_queue is None
        and all(
            s.flow is None and s.session_id is None and s.state is TaskState.QUEUED for s in specs
        )
        and not policy.rules()
    )


def publish_quietly(app: Any, dispatches: Sequence[Dispatch], settings: Settings) -> None:
    """Publish after commit, a batch in one round trip (``jobs.pipelined``). A broker outage
    loses nothing: the rows are queued in Postgres and the dispatch sweep publishes them
    again."""
    try:
        publish_pipelined(app, dispatches, grace_s=settings.timeout_grace_seconds)
    except Exception:
        log.warning(
            "publishing %d message(s) failed; the dispatch sweep will retry",
            len(dispatches),
            exc_info=True,
        )


def enqueue_call(
    task: Any,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """One call of a durable task: validate, write, publish; its ``DurableResult``."""
    from jobs.results import DurableResult

    spec = prepare(task, args, kwargs, **options)
    (task_id,) = submit(task.app, [spec])
    return DurableResult(task_id, app=task.app)


def enqueue(
    app: Any,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Enqueue by registered name (for producers that do not import the task)."""
    return enqueue_call(durable_task(app, name), args, kwargs, **options)


def enqueue_many(
    app: Any, calls: Sequence[tuple[str, Sequence[Any], Mapping[str, Any], Mapping[str, Any]]]
) -> list[Any]:
    """Seed 004's batch enqueue: ``(name, args, kwargs, options)`` each; one transaction."""
    from jobs.results import DurableResult

    now = utcnow()
    specs = [
        prepare(durable_task(app, name), args, kwargs, now=now, **dict(options))
        for name, args, kwargs, options in calls
    ]
    return [DurableResult(i, app=app) for i in submit(app, specs)]
