"""What a list's status and graph show, built from rows already read (no queries here).

``status`` reads the rows through SQLAlchemy, ``cli.reads`` through plain psycopg for the
CLI's fast start; both end here, so the two views cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.tasklists import graph
from jobs.tasklists.parser import Item
from jobs.tasklists.rows import ListRow, StoredItem, read
from models.states import TaskState


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


def build(lst: ListRow, found: list[StoredItem], active: list[Any]) -> ListStatusReport:
    return ListStatusReport(
        lst=lst, items=found, active=active, forecast=forecast(lst, found), counts=counts(found)
    )


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


def forecast(lst: ListRow, found: list[StoredItem]) -> graph.Forecast:
    now = datetime.now(UTC)
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


def stored_nodes(found: list[StoredItem]) -> list[graph.GraphNode]:
    """The graph of a loaded list: the items still in the file, each with its state."""
    return [_node(i, "completed" if i.done else str(i.state)) for i in found if i.in_file]


def file_nodes(path: str) -> list[graph.GraphNode]:
    """The graph from the file alone (a list not loaded, or no database at hand)."""
    return [_node(i, "completed" if i.checked else None) for i in read(path).items]


def _node(item: StoredItem | Item, state: str | None) -> graph.GraphNode:
    return graph.GraphNode(
        item_id=item.item_id,
        title=item.title,
        section=item.section,
        priority=item.priority,
        dependencies=item.dependencies,
        state=state,
    )
