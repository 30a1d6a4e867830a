"""Debounce: of a burst of enqueues with one key, only the last runs.

``apply_async(..., debounce=2.0, debounce_key="reindex:42")`` (the key defaults to the
task name and its session) schedules the task ``debounce`` seconds from now. A later
enqueue with the same key within that time supersedes it: the earlier task, still
``queued`` and not started, ends ``skipped`` with reason ``debounced`` (event
``task_skipped`` naming the task that replaced it), and the new one waits its own
``debounce`` seconds. A task that already started is left alone.

Enqueues of one key are serialised by a transaction-scoped advisory lock, so two at
the same instant cannot both survive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from jobs import errors
from jobs.transitions import move_tasks
from models import Task, TaskState
from models.flow import KEY_LIMIT

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

MAX_DEBOUNCE_S = 7 * 86400.0
REASON = "debounced"


def check_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.InvalidOption(f"debounce must be a number of seconds; got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_DEBOUNCE_S:
        raise errors.InvalidOption(f"debounce must be > 0 and at most a week; got {value}")
    return float(value)


def key_for(name: str, session_id: str | None, key: Any) -> str:
    if key is None:
        return f"{name}|session:{session_id or '-'}"
    if not isinstance(key, str) or not key.strip():
        raise errors.InvalidOption(f"debounce_key must be a non-empty string; got {key!r}")
    full = f"{name}|{key}"
    if len(full) > KEY_LIMIT:
        raise errors.InvalidOption(f"debounce_key is over {KEY_LIMIT - len(name) - 1} characters")
    return full


def supersede(conn: Connection, specs: Sequence[TaskSpec], now: datetime) -> list[TaskSpec]:
    """Skip the queued tasks each debounced spec replaces; schedule it after its quiet time."""
    keys = [s.flow.debounce_key for s in specs if s.flow is not None and s.flow.debounce_key]
    if len(keys) != len(set(keys)):
        raise errors.InvalidOption(
            "a batch has two calls with the same debounce key; only the last would run, "
            "so enqueue just that one"
        )
    out = []
    for spec in specs:
        flow = spec.flow
        if flow is None or flow.debounce_key is None or flow.debounce_s is None:
            out.append(spec)
            continue
        key = flow.debounce_key
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("tl-debounce:" + key))))
        move_tasks(
            conn,
            [Task.debounce_key == key, Task.id != spec.id],
            TaskState.SKIPPED,
            sources=[TaskState.QUEUED],
            values={
                "last_outcome": REASON,
                "last_error": f"{REASON}: superseded by task {spec.id}",
                "dispatched_at": None,
            },
            events=[("task_skipped", {"reason": REASON, "superseded_by": str(spec.id)})],
            now=now,
        )
        quiet_until = now + timedelta(seconds=flow.debounce_s)
        out.append(replace(spec, scheduled_for=max(spec.scheduled_for, quiet_until)))
    return out
