"""Task list operations for people and programs: one transaction each, then its messages.

    from jobs import tasklists
    report = tasklists.load(app, "tasks.md", handler="agent.work", session_id="agent-1")
    tasklists.start(app, "tasks.md")

The CLI (``taskledger lists``) and the API only call these.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from jobs import cancel, errors
from jobs.dispatch import release_rows
from jobs.enqueue import durable_task, publish_quietly
from jobs.tasklists import control, loading, store
from jobs.tasklists.control import Outcome
from jobs.tasklists.loading import LoadReport
from jobs.tasklists.parser import Item
from jobs.tasklists.rows import read
from jobs.tasklists.store import ListConfig
from models import TaskState, utcnow
from models.db import transaction
from models.settings import get_settings

T = TypeVar("T")


def _run(app: Any, fn: Callable[[Connection, datetime], tuple[T, Outcome]]) -> T:
    """One transaction (again if Postgres broke a deadlock with a finishing worker), then
    publish what it released and signal what it cancelled."""
    settings = get_settings()
    for attempt in range(3):
        try:
            with transaction() as conn:
                now = utcnow()
                value, out = fn(conn, now)
                out.dispatches += release_rows(
                    conn, out.queued, now=now, default_window=settings.session_concurrency
                )
            break
        except OperationalError as exc:
            if "deadlock" not in str(exc).lower() or attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
    publish_quietly(app, out.dispatches, settings)
    cancel.notify_running(settings, out.cancelled)
    return value


def load(
    app: Any,
    path: str | Path,
    *,
    handler: str | None = None,
    session_id: str | None = None,
    concurrency: int | None = None,
    max_retries: int | None = None,
    timeout_s: float | None = None,
    stop_grace_s: float | None = None,
) -> LoadReport:
    """Load (or reload) a task list file. Malformed lines are in ``report.problems``; a
    dependency cycle raises ``DependencyCycle`` and writes nothing."""
    parsed = read(path)
    config = None
    if handler is not None:
        durable_task(app, handler)  # UnknownTask before anything is written
        if concurrency is not None and concurrency < 1:
            raise errors.InvalidOption(f"concurrency must be at least 1; got {concurrency}")
        config = ListConfig(
            handler=handler,
            session_id=session_id,
            concurrency=concurrency or 1,
            max_retries=max_retries,
            timeout_s=timeout_s,
            stop_grace_s=stop_grace_s,
        )
    elif session_id is not None or concurrency is not None:
        raise errors.InvalidOption("give --handler with --session or --concurrency")

    def row_for(item: Item, cfg: ListConfig, goal_id: uuid.UUID, now: datetime) -> dict[str, Any]:
        spec = durable_task(app, cfg.handler).spec(
            None,
            loading.item_kwargs(item, parsed.path),
            now=now,
            priority=store.LEDGER_PRIORITY[item.priority],
            session_id=cfg.session_id,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout_s,
            title=f"{item.item_id}: {item.title}"[:500],
            metadata={"task_list": parsed.path, "item_id": item.item_id},
        )
        state = TaskState.COMPLETED if item.checked else TaskState.BLOCKED
        row: dict[str, Any] = replace(spec, goal_id=goal_id, state=state).row(now)
        # Checked: done by hand before the list was loaded, so recorded and never run. Every
        # row carries the same keys (one INSERT takes them all).
        row.update(
            finished_at=now if item.checked else None,
            last_outcome="checked_in_file" if item.checked else None,
        )
        return row

    def write(conn: Connection, now: datetime) -> tuple[LoadReport, Outcome]:
        report, queued = loading.load(conn, parsed, config=config, row_for=row_for, now=now)
        return report, Outcome("loaded", queued=queued)

    return _run(app, write)


def start(app: Any, path: str | Path, *, concurrency: int | None = None) -> str:
    key = store.canonical_path(path)
    return _message(app, lambda conn, now: control.start(conn, key, now, concurrency=concurrency))


def resume(app: Any, path: str | Path) -> str:
    key = store.canonical_path(path)
    return _message(app, lambda conn, now: control.resume(conn, key, now))


def pause(app: Any, path: str | Path) -> str:
    key = store.canonical_path(path)
    return _message(app, lambda conn, now: control.pause(conn, key, now))


def stop(app: Any, path: str | Path, *, grace_s: float | None = None) -> str:
    """Stop; running items are cancelled after ``grace_s`` (default: the list's
    ``stop_grace_s``, else TASKLEDGER_TIMEOUT_GRACE_SECONDS)."""
    key = store.canonical_path(path)

    def write(conn: Connection, now: datetime) -> Outcome:
        grace = grace_s
        if grace is None:
            lst = store.require_list(conn, key)
            grace = lst.config.stop_grace_s
        if grace is None:
            grace = get_settings().timeout_grace_seconds
        return control.stop(conn, key, now, grace_s=grace)

    return _message(app, write)


def skip(app: Any, path: str | Path, item_id: str) -> str:
    key = store.canonical_path(path)
    return _message(app, lambda conn, now: control.skip(conn, key, item_id, now))


def requeue(app: Any, path: str | Path, item_id: str) -> str:
    key = store.canonical_path(path)
    return _message(app, lambda conn, now: control.requeue(conn, key, item_id, now))


def sweep(app: Any) -> int:
    """The list sweep (beat): returns how many items it released or cancelled."""
    out = _run(app, lambda conn, now: _both(control.sweep(conn, now)))
    return len(out.queued) + len(out.cancelled)


def _message(app: Any, fn: Callable[[Connection, datetime], Outcome]) -> str:
    return _run(app, lambda conn, now: _both(fn(conn, now))).message


def _both(out: Outcome) -> tuple[Outcome, Outcome]:
    return out, out
