"""Reading task lists back: a list's status (with the active-queue view and a forecast),
all lists, and the dependency graph. Nothing here writes; ``report`` builds the views."""

from __future__ import annotations

from sqlalchemy import Connection, text

from jobs.tasklists import graph, report, store
from jobs.tasklists.report import ListStatusReport, counts
from jobs.tasklists.store import ListRow

__all__ = ["ListStatusReport", "all_lists", "graph_nodes", "list_status"]


def list_status(conn: Connection, path: str) -> ListStatusReport:
    lst = store.require_list(conn, path)
    active = list(
        conn.execute(
            text(
                "SELECT * FROM v_active_queue WHERE list_id = :id ORDER BY priority_order, position"
            ),
            {"id": lst.id},
        )
    )
    return report.build(lst, store.items(conn, lst.id), active)


def all_lists(conn: Connection) -> list[tuple[ListRow, dict[str, int]]]:
    return [(lst, counts(store.items(conn, lst.id))) for lst in store.all_lists(conn)]


def graph_nodes(conn: Connection, path: str) -> list[graph.GraphNode]:
    """The graph from the database when the list is loaded (with each item's state),
    else from the file alone."""
    lst = store.get_list(conn, path)
    return (
        report.file_nodes(path) if lst is None else report.stored_nodes(store.items(conn, lst.id))
    )
