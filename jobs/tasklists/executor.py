"""The executor of a task list: which items may run now, and the list's own state.

Why not ``jobs.goals.advance``: a goal runs its steps strictly one after another
by ``step_index``. A task list is a graph with priorities: an item may run once
its dependencies are done, the most urgent first, up to the list's concurrency,
and only while the list is running. So the list's items are ledger tasks that
wait in ``blocked`` (like goal steps), and ``settle`` moves the next ones to
``queued`` (through ``jobs/transitions.py``) whenever something changed: an
item finished (``item_left``, called from ``jobs.execution`` in the same
transaction as the finish), an operator acted, a file was reloaded, or the list
sweep looked. Every caller holds the list row's lock, so two workers finishing
items of one list at once cannot both take the last free slot.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from jobs.tasklists import graph, store
from jobs.tasklists.store import ListRow, StoredItem
from jobs.transitions import move_goal, move_task, move_tasks, record_goal_event
from models import Goal, GoalStatus, Task, TaskState
from models.task_list import ListStatus, TaskList, TaskListItem

log = logging.getLogger("taskledger.tasklists")


def item_left(conn: Connection, goal_id: uuid.UUID, now: datetime) -> list[Row[Any]] | None:
    """A task of this goal finished or was cancelled. None if the goal is not a task list;
    else the items it released. Never raises for a list it cannot read: the finish that
    called it must still be recorded, and loading the file again repairs the list."""
    try:
        lst = store.list_for_goal(conn, goal_id)
        if lst is None:
            return None
        with conn.begin_nested():
            return settle(conn, lst, now)
    except (OperationalError, InterfaceError):
        raise  # the database went away: the caller's retry handles it
    except Exception:
        # The list sweep and the next reload repair the list; losing the finish would be worse.
        log.warning("task list of goal %s could not be settled", goal_id, exc_info=True)
        return []


def settle(conn: Connection, lst: ListRow, now: datetime) -> list[Row[Any]]:
    """Skip what can no longer run, release what may run now, refresh the counters, and
    finish the list when nothing is left. The caller holds the list's lock."""
    found = store.items(conn, lst.id)
    if _skip_dependents_of_dead(conn, lst, found, now):
        found = store.items(conn, lst.id)
    queued: list[Row[Any]] = []
    if lst.status is ListStatus.RUNNING:
        queued = _release(conn, lst, found, now)
        if queued:
            found = store.items(conn, lst.id)
    _refresh(conn, lst, found, now)
    return queued


def candidates(found: Sequence[StoredItem], state: TaskState) -> list[graph.Candidate]:
    return [
        graph.Candidate(
            item_id=i.item_id,
            priority=i.priority,
            position=i.position,
            dependencies=i.dependencies,
        )
        for i in found
        if i.state is state and not i.checked
    ]


def _skip_dependents_of_dead(
    conn: Connection, lst: ListRow, found: Sequence[StoredItem], now: datetime
) -> bool:
    dead = {i.item_id: i.item_id for i in found if i.dead}
    if not dead:
        return False
    culprits = graph.blocked_by_dead(candidates(found, TaskState.BLOCKED), dead)
    by_id = {i.item_id: i for i in found}
    for item_id, dependency in culprits.items():
        item = by_id[item_id]
        moved = move_task(
            conn,
            item.task_id,
            TaskState.SKIPPED,
            sources=[TaskState.BLOCKED],
            events=[
                (
                    "task_skipped",
                    {
                        "reason": "dependency_failed",
                        "dependency": dependency,
                        "item_id": item_id,
                        "list": lst.path,
                    },
                )
            ],
            now=now,
            strict=False,
        )
        if moved is not None:
            set_item(conn, item.row_id, now, skip_reason=f"dependency_failed: {dependency}")
    return bool(culprits)


def _release(
    conn: Connection, lst: ListRow, found: Sequence[StoredItem], now: datetime
) -> list[Row[Any]]:
    room = lst.config.concurrency - sum(1 for i in found if i.in_flight)
    done = {i.item_id for i in found if i.done}
    picks = graph.runnable(candidates(found, TaskState.BLOCKED), done, room=room)
    if not picks:
        return []
    by_id = {i.item_id: i for i in found}
    item_of = {by_id[c.item_id].task_id: c.item_id for c in picks}
    rows = move_tasks(
        conn,
        [Task.id.in_(list(item_of))],
        TaskState.QUEUED,
        sources=[TaskState.BLOCKED],
        values={"dispatched_at": None},
        events=lambda r: [("task_unblocked", {"list": lst.path, "item_id": item_of[r.id]})],
        now=now,
    )
    return rows


def _refresh(conn: Connection, lst: ListRow, found: Sequence[StoredItem], now: datetime) -> None:
    values: dict[str, Any] = {
        "total_items": len(found),
        "completed_items": sum(1 for i in found if i.done),
        "failed_items": sum(1 for i in found if i.state is TaskState.FAILED and not i.checked),
        "skipped_items": sum(1 for i in found if i.dead and i.state is not TaskState.FAILED),
        "current_item_id": current_item(found),
    }
    finished = bool(found) and all(i.final for i in found)
    if finished and lst.status is not ListStatus.STOPPED:
        values.update(status=ListStatus.STOPPED, stopped_at=now, stop_deadline=None)
        failed = values["failed_items"]
        record_goal_event(
            conn,
            lst.goal_id,
            "list_finished",
            {
                "list": lst.path,
                "completed": values["completed_items"],
                "failed": failed,
                "skipped": values["skipped_items"],
            },
            now=now,
        )
        status = GoalStatus.FAILED if failed else GoalStatus.COMPLETED
        move_goal(
            conn,
            lst.goal_id,
            status,
            event=(f"goal_{status}", {"list": lst.path}),
            now=now,
            strict=False,
        )
    current = {
        "total_items": lst.total_items,
        "completed_items": lst.completed_items,
        "failed_items": lst.failed_items,
        "skipped_items": lst.skipped_items,
        "current_item_id": lst.current_item_id,
    }
    if any(current.get(k) != v for k, v in values.items()):
        set_list(conn, lst.id, now, **values)


def current_item(found: Sequence[StoredItem]) -> str | None:
    """The item running now (the latest started), else the next one handed to workers."""
    running = [i for i in found if i.state is TaskState.RUNNING]
    if running:
        return max(running, key=lambda i: (i.started_at is not None, i.started_at)).item_id
    waiting = [i for i in found if i.in_flight]
    return min(waiting, key=lambda i: (i.priority, i.position)).item_id if waiting else None


def set_list(conn: Connection, list_id: uuid.UUID, now: datetime, **values: Any) -> None:
    conn.execute(update(TaskList).where(TaskList.id == list_id).values(updated_at=now, **values))


def set_item(conn: Connection, row_id: uuid.UUID, now: datetime, **values: Any) -> None:
    conn.execute(
        update(TaskListItem).where(TaskListItem.id == row_id).values(updated_at=now, **values)
    )


def goal_status(conn: Connection, goal_id: uuid.UUID) -> GoalStatus:
    return GoalStatus(conn.execute(select(Goal.status).where(Goal.id == goal_id)).scalar_one())


def open_goal(conn: Connection, lst: ListRow, now: datetime) -> uuid.UUID:
    """The goal new item tasks belong to. A list whose goal has ended (every item was done)
    and then gets new work continues under a new goal; the old one keeps its history."""
    if goal_status(conn, lst.goal_id) not in (GoalStatus.COMPLETED, GoalStatus.CANCELLED):
        return lst.goal_id
    from jobs.transitions import create_goal

    goal_id = uuid.uuid4()
    create_goal(
        conn,
        {
            "id": goal_id,
            "title": lst.title,
            "description": f"task list {lst.path}",
            "status": GoalStatus.OPEN,
            "priority": 0,
            "metadata": {"task_list": lst.path, "previous_goal": str(lst.goal_id)},
            "created_at": now,
            "updated_at": now,
        },
        now,
    )
    record_goal_event(
        conn, lst.goal_id, "list_continued", {"list": lst.path, "goal_id": str(goal_id)}, now=now
    )
    set_list(conn, lst.id, now, goal_id=goal_id)
    if lst.status is not ListStatus.STOPPED:
        move_goal(conn, goal_id, GoalStatus.IN_PROGRESS, event=("goal_started", {}), now=now)
    return goal_id


def replacement_task(
    conn: Connection, old_task_id: uuid.UUID, goal_id: uuid.UUID, now: datetime, *, why: str
) -> uuid.UUID:
    """A fresh ``blocked`` task for an item whose task ended (requeue) or was interrupted
    (stop): same handler and arguments, a fresh retry budget. The old row keeps its history."""
    from jobs.transitions import create_tasks

    old = conn.execute(select(*Task.__table__.c).where(Task.id == old_task_id)).one()
    row = dict(old._mapping)
    new_id = uuid.uuid4()
    row.update(
        id=new_id,
        goal_id=goal_id,
        step_index=None,
        state=TaskState.BLOCKED,
        attempts=0,
        retries=0,
        backoff_until=None,
        scheduled_for=now,
        dispatched_at=None,
        dispatch_count=0,
        worker_id=None,
        lease_expires_at=None,
        result=None,
        last_error=None,
        last_outcome=None,
        verification_status=old.verification_status.__class__("unverified"),
        metadata={**(old.metadata or {}), "replaces": str(old_task_id), "why": why},
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
    )
    create_tasks(conn, [row], now)
    return new_id
