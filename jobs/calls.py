"""A call of a durable task -> a validated ``TaskSpec``, nothing written (``prepare``).

Part of the enqueue path (``jobs/enqueue.py`` is the front door): which options a durable
task takes, finding the task by name, checking the call against its signature, its
queue and its flow controls (``jobs/flow.py``).
"""

from __future__ import annotations

import inspect
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jobs import errors, flow
from jobs.taskspec import TaskSpec, build_spec
from models import utcnow
from models.settings import Settings, get_settings

ENQUEUE_OPTIONS = frozenset(
    {
        "session_id",
        "priority",
        "countdown",
        "eta",
        "expires",
        "max_retries",
        "timeout",
        "soft_time_limit",
        "time_limit",
        "queue",
        "metadata",
        "title",
        "user_id",
        *flow.OPTIONS,  # idempotency_key, debounce, debounce_key
    }
)
# What Celery's canvas, beat and retry pass along on their own (message plumbing the
# ledger decides itself); accepted and ignored.
IGNORED_OPTIONS = frozenset(
    {
        "producer",
        "headers",
        "reply_to",
        "parent_id",
        "root_id",
        "add_to_parent",
        "group_index",
        "retries",
        "route_name",
        "exchange",
        "routing_key",
        "serializer",
        "compression",
        "ignore_result",
        "stamped_headers",
        "stamps",
        "replaced_task_nesting",
        "task_type",
        "publisher",
        "connection",
        "router",
        "result_cls",
    }
)


def durable_task(app: Any, name: str) -> Any:
    """The registered durable task called ``name``, or UnknownTask."""
    task = find_durable(app, name)
    if task is None:
        known = sorted(n for n, t in app.tasks.items() if is_durable(t))
        raise errors.UnknownTask(
            f"unknown task {name!r}: no durable task of that name is registered "
            f"(known: {', '.join(known) or 'none'}; modules load from TASKLEDGER_IMPORTS)"
        )
    return task


def is_durable(task: Any) -> bool:
    return bool(getattr(task, "taskledger_durable", False))


def find_durable(app: Any, name: str) -> Any:
    """The durable task ``name``, or None (TASKLEDGER_IMPORTS are loaded once, as a worker
    would, so a producer that never imported the task module still finds it)."""
    task = app.tasks.get(name) if isinstance(name, str) else None
    if task is None and isinstance(name, str) and not getattr(app, "_taskledger_imported", 0):
        app.loader.import_default_modules()
        app._taskledger_imported = 1
        task = app.tasks.get(name)
    return task if is_durable(task) else None


def prepare(
    task: Any,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    task_id: str | uuid.UUID | None = None,
    now: datetime | None = None,
    chained: bool = False,
    **options: Any,
) -> TaskSpec:
    """Validate a call of a durable task without writing anything. ``chained``: the
    previous chain step's result will be prepended to ``args`` when it runs."""
    for key in list(options):
        if key in IGNORED_OPTIONS or (options[key] is None and key not in ENQUEUE_OPTIONS):
            options.pop(key)
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise errors.InvalidOption(
            f"unsupported option(s) {sorted(unknown)} for {task.name}; "
            f"durable tasks take {sorted(ENQUEUE_OPTIONS)}"
        )
    _check_signature(task, [None, *(args or ())] if chained else args, kwargs)
    settings = get_settings()
    options.setdefault("priority", task.priority)
    options.setdefault("max_retries", task.max_retries)
    if not {"timeout", "soft_time_limit", "time_limit"} & set(options):
        options["timeout"] = task.timeout
    queue = _queue_name(options.pop("queue", None)) or _default_queue(task, settings)
    check_queue_declared(queue, settings)
    controls = flow.pop_options(options)
    spec = build_spec(
        task.name,
        args,
        kwargs,
        settings=settings,
        now=now or utcnow(),
        queue=queue,
        task_id=task_id,
        **options,
    )
    return flow.attach(task, spec, controls)


def check_queue_declared(queue: str, settings: Settings) -> None:
    """Only queues a deployment consumes (TASKLEDGER_QUEUES): a row on any other queue would
    wait forever and hold its session's slot."""
    if queue not in settings.declared_queues:
        raise errors.QueueNotDeclared(
            f"queue {queue!r} is not declared; declared queues: "
            f"{', '.join(settings.declared_queues)} (TASKLEDGER_QUEUES; start workers with -Q)"
        )


def _queue_name(queue: Any) -> str | None:
    return None if queue is None else str(getattr(queue, "name", queue))


def _check_signature(task: Any, args: Sequence[Any] | None, kwargs: Any) -> None:
    signature = _signature(task.run)
    try:
        signature.bind(*(args or ()), **(kwargs or {}))
    except TypeError as exc:
        raise errors.ArgsNotSerializable(f"{task.name}{signature}: {exc}") from None


@lru_cache(maxsize=1024)
def _signature(run: Any) -> inspect.Signature:
    """Computing a signature costs more than binding it; a task's function never changes."""
    return inspect.signature(run)


def _default_queue(task: Any, settings: Settings) -> str:
    if getattr(task, "queue", None):
        return str(task.queue)
    router = task.app.amqp.router
    routed = _routed.setdefault(router, {})
    if task.name not in routed:
        routed[task.name] = _queue_name(router.route({}, task.name).get("queue"))
    return routed[task.name] or settings.default_queue


# A task's routed queue, per router: Celery makes a new router when the routes change.
_routed: weakref.WeakKeyDictionary[Any, dict[str, str | None]] = weakref.WeakKeyDictionary()
