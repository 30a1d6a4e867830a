"""Celery's canvas for durable tasks: a chain becomes a goal, a group one atomic batch.

- ``chain(a.s(1), b.s(), c.si(2))`` is a goal with one step per signature, run in
  order. As in Celery, each step gets the previous step's result prepended to its
  arguments, except immutable signatures (``.si()``). The chain's result is the last
  step's ``DurableResult``.
- ``group(a.s(1), b.s(2))`` is written in one transaction (all or nothing) when Celery
  builds its ``GroupResult`` (``LedgerGroupResult``); ``.get()`` waits on the ledger.
- ``chord``, ``link``/``link_error``, and chains or groups mixing durable and plain
  Celery tasks raise ``UnsupportedCanvas`` naming what to use instead.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from celery.canvas import Signature, maybe_signature
from celery.result import GroupResult
from sqlalchemy import Connection, select

from jobs import errors, goals
from jobs.dispatch import Dispatch, release_rows
from jobs.enqueue import TaskSpec, find_durable, prepare, publish_quietly, submit
from jobs.results import DurableResult
from models import Task, utcnow
from models.db import transaction
from models.settings import get_settings

CHAIN_KEY = "taskledger_chain"  # in a step's metadata: prepend the previous step's result

_groups = threading.local()  # group id -> specs of its durable members, until GroupResult


def apply_chain(
    first: Any,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    steps: Sequence[Any],
    *,
    task_id: str | None = None,
    **options: Any,
) -> DurableResult:
    """Celery hands the first task of a chain the rest as ``chain=`` (last step first)."""
    app = first.app
    now = utcnow()
    specs = [prepare(first, args, kwargs, task_id=task_id, now=now, **options)]
    for raw in reversed(list(steps)):
        sig = maybe_signature(raw, app=app)
        task = _durable_member(app, sig, "chain")
        step_options = dict(sig.options)
        step_id = step_options.pop("task_id", None)
        chained = not sig.immutable
        spec = prepare(
            task, sig.args, sig.kwargs, task_id=step_id, now=now, chained=chained, **step_options
        )
        specs.append(replace(spec, meta={**spec.meta, CHAIN_KEY: True}) if chained else spec)
    title = "chain: " + " -> ".join(s.name for s in specs)
    settings = get_settings()

    with transaction() as conn:
        goal_id = goals.create_goal(conn, title=title, steps=specs, now=now)
        queued = goals.start_goal(conn, goal_id, now)
        dispatches: list[Dispatch] = release_rows(
            conn, queued, now=now, default_window=settings.session_concurrency
        )
    publish_quietly(app, dispatches, settings)
    return DurableResult(specs[0].id, app=app)


def previous_result(attempt: Any) -> Any:
    """The result of the chain step before this one (None if it was skipped)."""
    with transaction() as conn:
        return _previous_result(conn, attempt.goal_id, attempt.step_index)


def _previous_result(conn: Connection, goal_id: uuid.UUID, step_index: int) -> Any:
    return conn.execute(
        select(Task.result).where(Task.goal_id == goal_id, Task.step_index == step_index - 1)
    ).scalar_one_or_none()


def add_to_group(
    task: Any,
    group_id: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    task_id: str | None = None,
    **options: Any,
) -> DurableResult:
    """One member of ``group.apply_async``: validated now, written with the others."""
    pending: dict[str, list[TaskSpec]] = _pending()
    try:
        spec = prepare(task, args, kwargs, task_id=task_id, **options)
    except Exception:
        pending.pop(group_id, None)  # the group fails as a whole: nothing is written
        raise
    pending.setdefault(group_id, []).append(spec)
    return DurableResult(spec.id, app=task.app)


def flush_group(app: Any, group_id: str | None, results: Sequence[Any]) -> None:
    """Write a group's durable members in one transaction, then publish them."""
    specs = _pending().pop(str(group_id), None) if group_id is not None else None
    if not specs:
        return
    ours = {str(spec.id) for spec in specs}
    plain = [r.id for r in results if str(getattr(r, "id", "")) not in ours]
    if plain:
        raise errors.UnsupportedCanvas(
            f"group {group_id} mixes durable and plain Celery tasks ({len(plain)} plain, sent "
            "as usual); its durable tasks were not enqueued. Put durable tasks in a group of "
            "their own, or use jobs.enqueue_many for an atomic batch"
        )
    submit(app, specs)


class LedgerGroupResult(GroupResult):
    """Celery builds this right after applying a group's members: the moment to write
    the durable ones, all or nothing."""

    def __init__(self, id: str | None = None, results: Any = None, **kwargs: Any) -> None:
        super().__init__(id, results, **kwargs)
        flush_group(self.app, id, list(results or []))


def _pending() -> dict[str, list[TaskSpec]]:
    if not hasattr(_groups, "specs"):
        _groups.specs = {}
    specs: dict[str, list[TaskSpec]] = _groups.specs
    return specs


def _durable_member(app: Any, sig: Signature, what: str) -> Any:
    task = find_durable(app, sig.task) if isinstance(sig.task, str) else None
    if task is None:
        raise errors.UnsupportedCanvas(
            f"a {what} of durable tasks cannot include {sig.task!r} (a plain Celery task, a "
            "group or a chord): use durable tasks only, or a goal "
            "(jobs.operations.create_goal) for ordered steps"
        )
    return task
