"""Reading task lists back: a list's status (with the active-queue view and a forecast),
all lists, and the dependency graph. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from jobs.tasklists import graph, store
from jobs.tasklists.parser import Item
from jobs.tasklists.store import ListRow, StoredItem
from models import TaskState, utcnow


@dataclass(frozen=True, kw_only=True)
class ListStatusReport:
    lst: ListRow
    items: list[StoredItem]
    active: list[Any]  # rows of v_active_queue
    forecast: graph.Forecast
    counts: dict[str, int]

    @property
    def done(self) -> int:
        return self.counts["completed"] + self.counts["failed"] + self.counts["skipped"]


def counts(found: list[StoredItem]) -> dict[str, int]:
    out = {"total": len(found), "completed": 0, "failed": 0, "skipped": 0, "running": 0}
    out["waiting"] = 0
    for i in found:
        if i.done:
            out["completed"] += 1
        elif i.state is TaskState.FAILED:
            out["failed"] += 1
        elif i.dead:
            out["skipped"] += 1
        elif i.state is TaskState.RUNNING:
            out["running"] += 1
        else:
            out["waiting"] += 1
    return out


def list_status(conn: Connection, path: str) -> ListStatusReport:
    lst = store.require_list(conn, path)
    found = store.items(conn, lst.id)
    active = list(
        conn.execute(
            text(
                "SELECT * FROM v_active_queue WHERE list_id = :id ORDER BY priority_order, position"
            ),
            {"id": lst.id},
        )
    )
    return ListStatusReport(
        lst=lst,
        items=found,
        active=active,
        forecast=forecast(lst, found),
        counts=counts(found),
    )


def forecast(lst: ListRow, found: list[StoredItem]) -> graph.Forecast:
    now = utcnow()
    durations = [
        (i.finished_at - i.started_at).total_seconds()
        for i in found
        if i.state is TaskState.COMPLETED and i.started_at and i.finished_at
    ]
    remaining = sum(1 for i in found if not i.final)
    running = [
        (now - i.started_at).total_seconds()
        for i in found
        if i.state is TaskState.RUNNING and i.started_at
    ]
    return graph.forecast(
        durations,
        remaining=remaining,
        running_elapsed_s=running,
        concurrency=lst.config.concurrency,
        now=now,
    )


def all_lists(conn: Connection) -> list[tuple[ListRow, dict[str, int]]]:
    return [(lst, counts(store.items(conn, lst.id))) for lst in store.all_lists(conn)]


def graph_nodes(conn: Connection | None, path: str) -> list[graph.GraphNode]:
    """The graph from the database when the list is loaded (with each item's state),
    else from the file alone."""
    if conn is not None:
        lst = store.get_list(conn, path)
        if lst is not None:
            return [
                _node(i, "completed" if i.done else str(i.state))
                for i in store.items(conn, lst.id)
                if i.in_file
            ]
    from jobs.tasklists.operations import read

    parsed = read(path)
    return [_node(i, "completed" if i.checked else None) for i in parsed.items]


def _node(item: StoredItem | Item, state: str | None) -> graph.GraphNode:
    return graph.GraphNode(
        item_id=item.item_id,
        title=item.title,
        section=item.section,
        priority=item.priority,
        dependencies=item.dependencies,
        state=state,
    )
