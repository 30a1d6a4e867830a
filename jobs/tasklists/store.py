"""Reading a stored task list: the executor row and its items with their ledger tasks.

The values and their checks are in ``jobs.tasklists.rows`` (re-exported here); this
module holds the queries.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, or_, select

from jobs.tasklists.rows import (
    DEAD_STATES,
    IN_FLIGHT_STATES,
    LEDGER_PRIORITY,
    PRIORITY_LABELS,
    DependencyCycle,
    InvalidListPath,
    ListConfig,
    ListNotLoaded,
    ListRow,
    StoredItem,
    StoredQueueUnreadable,
    UnknownItem,
    canonical_path,
    item_from_row,
    not_loaded,
)
from models import Task
from models.states import ListStatus
from models.task_list import TaskList, TaskListItem

__all__ = [
    "DEAD_STATES",
    "IN_FLIGHT_STATES",
    "LEDGER_PRIORITY",
    "PRIORITY_LABELS",
    "DependencyCycle",
    "InvalidListPath",
    "ListConfig",
    "ListNotLoaded",
    "ListRow",
    "StoredItem",
    "StoredQueueUnreadable",
    "UnknownItem",
    "canonical_path",
    "item_from_row",
]


def get_list(conn: Connection, path: str, *, lock: bool = False) -> ListRow | None:
    stmt = select(*TaskList.__table__.c).where(TaskList.path == path)
    row = conn.execute(stmt.with_for_update() if lock else stmt).one_or_none()
    return None if row is None else ListRow.from_row(row)


def require_list(conn: Connection, path: str, *, lock: bool = False) -> ListRow:
    found = get_list(conn, path, lock=lock)
    if found is None:
        raise not_loaded(path)
    return found


def list_for_goal(conn: Connection, goal_id: uuid.UUID) -> ListRow | None:
    """The list whose goal this is, locked (serialises everything that moves one list)."""
    row = conn.execute(
        select(*TaskList.__table__.c).where(TaskList.goal_id == goal_id).with_for_update()
    ).one_or_none()
    return None if row is None else ListRow.from_row(row)


def all_lists(conn: Connection) -> list[ListRow]:
    rows = conn.execute(select(*TaskList.__table__.c).order_by(TaskList.created_at))
    return [ListRow.from_row(r) for r in rows]


def active_paths(conn: Connection) -> list[str]:
    """Lists the sweep looks at: not stopped, or stopped with running items on a grace."""
    stmt = select(TaskList.path).where(
        or_(TaskList.status != ListStatus.STOPPED, TaskList.stop_deadline.is_not(None))
    )
    return list(conn.execute(stmt.order_by(TaskList.path)).scalars())


def items(conn: Connection, list_id: uuid.UUID) -> list[StoredItem]:
    """The list's items in file order, each with its current task's state."""
    stmt = (
        select(
            *TaskListItem.__table__.c,
            Task.state,
            Task.attempts,
            Task.started_at,
            Task.finished_at,
            Task.last_error,
            Task.session_id,
        )
        .select_from(TaskListItem)
        .join(Task, Task.id == TaskListItem.task_id, isouter=True)
        .where(TaskListItem.list_id == list_id)
        .order_by(TaskListItem.position, TaskListItem.item_id)
    )
    return [item_from_row(r) for r in conn.execute(stmt)]


def find_item(found: list[StoredItem], item_id: str, path: str) -> StoredItem:
    for item in found:
        if item.item_id == item_id:
            return item
    raise UnknownItem(f"{path} has no item {item_id!r}")
