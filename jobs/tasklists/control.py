"""Operating a list's executor: start, pause, resume, stop, skip, requeue (one transaction each).

Each is idempotent (asking for the state a list is already in changes nothing and
says so) and audited: the list's goal gets a ``list_*`` event, an item's task its
task event. Interrupted items (a stop) get a fresh ``blocked`` task, so a later
start runs them again; a cancelled task itself never starts again (invariant 7).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select
from sqlalchemy.exc import InterfaceError, OperationalError

from jobs import cancel, errors
from jobs.dispatch import Dispatch
from jobs.tasklists import executor, store
from jobs.tasklists.store import ListRow, StoredItem
from jobs.transitions import move_goal, move_task, move_tasks, record_goal_event
from models import GoalStatus, Task, TaskState
from models.task_list import ListStatus

REVIVABLE_SKIPS = ("dependency_failed",)
log = logging.getLogger("taskledger.tasklists")


@dataclass
class Outcome:
    """What an operation did: a sentence for people, and what to do after the commit."""

    message: str
    changed: bool = True
    queued: list[Row[Any]] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)


def start(
    conn: Connection,
    path: str,
    now: datetime,
    *,
    concurrency: int | None = None,
    event: str = "list_started",
) -> Outcome:
    lst = store.require_list(conn, path, lock=True)
    config_changed = concurrency is not None and concurrency != lst.config.concurrency
    if concurrency is not None and concurrency < 1:
        raise errors.InvalidOption(f"concurrency must be at least 1; got {concurrency}")
    if lst.status is ListStatus.RUNNING and not config_changed:
        return Outcome(f"{path} is already running", changed=False, queued=_settle(conn, path, now))
    values: dict[str, Any] = {"status": ListStatus.RUNNING, "stop_deadline": None}
    if lst.status is not ListStatus.RUNNING:
        values["started_at"] = now
    if config_changed:
        values["config"] = {**lst.config.to_json(), "concurrency": concurrency}
    executor.set_list(conn, lst.id, now, **values)
    goal = executor.goal_status(conn, lst.goal_id)
    if goal is GoalStatus.OPEN:
        move_goal(conn, lst.goal_id, GoalStatus.IN_PROGRESS, event=("goal_started", {}), now=now)
    elif goal is GoalStatus.FAILED:
        move_goal(conn, lst.goal_id, GoalStatus.IN_PROGRESS, event=("goal_resumed", {}), now=now)
    record_goal_event(
        conn,
        lst.goal_id,
        event,
        {
            "list": path,
            "from": str(lst.status),
            "concurrency": concurrency or lst.config.concurrency,
        },
        now=now,
    )
    verb = "resumed" if event == "list_resumed" else "started"
    return Outcome(f"{path} {verb}", queued=_settle(conn, path, now))


def resume(conn: Connection, path: str, now: datetime) -> Outcome:
    return start(conn, path, now, event="list_resumed")


def pause(conn: Connection, path: str, now: datetime) -> Outcome:
    """Running items finish; nothing new starts (released-but-unclaimed items go back)."""
    lst = store.require_list(conn, path, lock=True)
    if lst.status is ListStatus.PAUSED:
        return Outcome(f"{path} is already paused", changed=False)
    if lst.status is ListStatus.STOPPED:
        raise errors.InvalidTransition(f"{path} is stopped; there is nothing to pause")
    executor.set_list(conn, lst.id, now, status=ListStatus.PAUSED, paused_at=now)
    held = _hold_released(conn, lst, now, reason="list_paused")
    record_goal_event(conn, lst.goal_id, "list_paused", {"list": path, "held": held}, now=now)
    _settle(conn, path, now)
    return Outcome(f"{path} paused; running items finish, nothing new starts")


def stop(conn: Connection, path: str, now: datetime, *, grace_s: float) -> Outcome:
    """Nothing new starts; running items are cancelled once ``grace_s`` has passed (at once
    for 0) and will run again from the start on the next start."""
    lst = store.require_list(conn, path, lock=True)
    if grace_s < 0:
        raise errors.InvalidOption(f"grace must be >= 0 seconds; got {grace_s}")
    if lst.status is ListStatus.STOPPED and (grace_s > 0 or not _running(conn, lst)):
        return Outcome(f"{path} is already stopped", changed=False)
    deadline = now + timedelta(seconds=grace_s) if grace_s > 0 else None
    executor.set_list(
        conn, lst.id, now, status=ListStatus.STOPPED, stopped_at=now, stop_deadline=deadline
    )
    held = _hold_released(conn, lst, now, reason="list_stopped")
    record_goal_event(
        conn, lst.goal_id, "list_stopped", {"list": path, "grace_s": grace_s, "held": held}, now=now
    )
    out = Outcome(f"{path} stopped")
    if deadline is None:
        interrupt(conn, lst, now, out)
    else:
        out.message += f"; running items are cancelled if still running at {deadline:%H:%M:%S}"
    _settle(conn, path, now)
    return out


def interrupt(conn: Connection, lst: ListRow, now: datetime, out: Outcome) -> None:
    """Cancel the list's running (and retry-waiting) items; each gets a fresh blocked task."""
    goal_id = executor.open_goal(conn, lst, now)
    for item in store.items(conn, lst.id):
        if item.state not in (TaskState.RUNNING, TaskState.RETRY_WAIT):
            continue
        new_id = executor.replacement_task(conn, item.task_id, goal_id, now, why="list_stopped")
        executor.set_item(conn, item.row_id, now, task_id=new_id)
        row, dispatches = cancel.cancel_task(
            conn, item.task_id, reason="list stopped", now=now, default_window=_window()
        )
        out.dispatches += dispatches
        out.cancelled.append(row.id)
    executor.set_list(conn, lst.id, now, stop_deadline=None)


def skip(conn: Connection, path: str, item_id: str, now: datetime) -> Outcome:
    lst = store.require_list(conn, path, lock=True)
    item = store.find_item(store.items(conn, lst.id), item_id, path)
    if item.state is TaskState.COMPLETED or item.checked:
        raise errors.InvalidTransition(f"{item_id} is already completed; it cannot be skipped")
    if item.state in (TaskState.SKIPPED, TaskState.CANCELLED):
        return Outcome(f"{item_id} is already {item.state}", changed=False)
    out = Outcome(f"{item_id} skipped")
    if item.state is TaskState.RUNNING:
        row, dispatches = cancel.cancel_task(
            conn, item.task_id, reason="skipped by operator", now=now, default_window=_window()
        )
        out.dispatches += dispatches
        out.cancelled.append(row.id)
        out.message += " (its running attempt was cancelled)"
    else:
        move_task(
            conn,
            item.task_id,
            TaskState.SKIPPED,
            events=[("task_skipped", {"reason": "operator", "item_id": item_id, "list": path})],
            now=now,
        )
    executor.set_item(conn, item.row_id, now, skip_reason="skipped by operator")
    out.queued = _settle(conn, path, now)
    return out


def requeue(conn: Connection, path: str, item_id: str, now: datetime) -> Outcome:
    """Run a failed, skipped or cancelled item again (a fresh task and retry budget); items
    skipped because a dependency failed come back with it."""
    lst = store.require_list(conn, path, lock=True)
    found = store.items(conn, lst.id)
    item = store.find_item(found, item_id, path)
    if item.state is TaskState.COMPLETED or item.checked:
        raise errors.InvalidTransition(
            f"{item_id} is completed; completed items are never run again"
        )
    if not item.dead:
        return Outcome(f"{item_id} is already waiting to run ({item.state})", changed=False)
    goal_id = executor.open_goal(conn, lst, now)
    revived = [item] + [
        i
        for i in found
        if i.state is TaskState.SKIPPED
        and (i.skip_reason or "").startswith(REVIVABLE_SKIPS)
        and i.item_id != item_id
    ]
    for each in revived:
        _renew(conn, lst, each, goal_id, now)
    if executor.goal_status(conn, goal_id) is GoalStatus.FAILED and lst.status is not (
        ListStatus.STOPPED
    ):
        move_goal(conn, goal_id, GoalStatus.IN_PROGRESS, event=("goal_resumed", {}), now=now)
    record_goal_event(
        conn,
        goal_id,
        "list_item_requeued",
        {"list": path, "item_id": item_id, "revived": [i.item_id for i in revived[1:]]},
        now=now,
    )
    # Dependents that still have another dead dependency are skipped again by settle.
    message = f"{item_id} queued again"
    if len(revived) > 1:
        message += f" with {len(revived) - 1} dependent item(s)"
    return Outcome(message, queued=_settle(conn, path, now))


def _renew(
    conn: Connection, lst: ListRow, item: StoredItem, goal_id: uuid.UUID, now: datetime
) -> None:
    new_id = executor.replacement_task(conn, item.task_id, goal_id, now, why="requeued")
    executor.set_item(conn, item.row_id, now, task_id=new_id, skip_reason=None)


def _hold_released(conn: Connection, lst: ListRow, now: datetime, *, reason: str) -> int:
    """Items handed to the workers but not claimed yet go back to waiting (pause, stop)."""
    waiting = [i.task_id for i in store.items(conn, lst.id) if i.state is TaskState.QUEUED]
    if not waiting:
        return 0
    rows = move_tasks(
        conn,
        [Task.id.in_(waiting)],
        TaskState.BLOCKED,
        sources=[TaskState.QUEUED],
        values={"dispatched_at": None},
        events=[("task_held", {"reason": reason, "list": lst.path})],
        now=now,
    )
    return len(rows)


def _running(conn: Connection, lst: ListRow) -> bool:
    return any(
        i.state in (TaskState.RUNNING, TaskState.RETRY_WAIT) for i in store.items(conn, lst.id)
    )


def _settle(conn: Connection, path: str, now: datetime) -> list[Row[Any]]:
    # Re-read: the operation changed the row (status, config, goal).
    return executor.settle(conn, store.require_list(conn, path), now)


def _window() -> int:
    from models.settings import get_settings

    return get_settings().session_concurrency


def sweep(conn: Connection, now: datetime) -> Outcome:
    """The list sweep: cancel what a stop's grace ran out on, and settle every running list
    (heals a list that a bulk change outside it left waiting). One list's trouble does
    not stop the others."""
    out = Outcome("sweep")
    key = func.hashtext("taskledger-sweep:task_lists")
    if not conn.execute(select(func.pg_try_advisory_xact_lock(key))).scalar_one():
        return out  # another sweep is at it
    for path in store.active_paths(conn):
        try:
            with conn.begin_nested():
                locked = store.get_list(conn, path, lock=True)
                if locked is None:
                    continue
                if (
                    locked.status is ListStatus.STOPPED
                    and locked.stop_deadline is not None
                    and locked.stop_deadline <= now
                ):
                    interrupt(conn, locked, now, out)
                if locked.status is not ListStatus.STOPPED or locked.stop_deadline is not None:
                    out.queued += executor.settle(conn, locked, now)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            log.warning("task list %s could not be swept; the others go on", path, exc_info=True)
    return out
