"""The CLI's read-only views in plain SQL over psycopg: the same rows as ``jobs.queries``.

Why not ``jobs.queries``: importing it loads SQLAlchemy and the ORM tables, about 0.6 s
before the first query, which made ``taskledger tasks`` take a second. These reads need
none of that. Task lists reuse ``jobs.tasklists.rows`` and ``report`` (the row types and
the views), which import neither. Each function names the query it mirrors;
tests/integration/test_cli_reads.py checks that both return the same rows. Rows are
named tuples with the tables' SQL column names (``row_dict`` turns them into dicts).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import namedtuple_row

from jobs.tasklists import rows
from models.settings import get_settings
from models.states import TaskState

if TYPE_CHECKING:  # the views load Markdown parsing: only the task-list reads need them
    from jobs.tasklists import graph, report


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://``) as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


@contextmanager
def reading() -> Iterator[psycopg.Connection[Any]]:
    """One read-only transaction; timestamps come back in UTC, as from the engine."""
    url = _libpq_url(get_settings().resolved_database_url)
    with psycopg.connect(url, row_factory=namedtuple_row) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        yield conn


def _where(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``WHERE a = %(a)s AND …`` for the filters that are not None."""
    given = {column: value for column, value in filters.items() if value is not None}
    if not given:
        return "", {}
    return " WHERE " + " AND ".join(f"{c} = %({c})s" for c in given), given


# -- tasks (jobs.queries) ---------------------------------------------------------------------


def get_task(conn: psycopg.Connection[Any], task_id: uuid.UUID) -> Any | None:
    return conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()


def list_tasks(
    conn: psycopg.Connection[Any],
    *,
    state: str | None = None,
    session_id: str | None = None,
    limit: int = 50,
) -> list[Any]:
    where, params = _where({"state": state, "session_id": session_id})
    sql = f"SELECT * FROM tasks{where} ORDER BY created_at DESC, id LIMIT %(limit)s"
    return conn.execute(sql, {**params, "limit": limit}).fetchall()


def peek(conn: psycopg.Connection[Any], *, session_id: str | None = None, limit: int = 10) -> Any:
    where, params = _where({"state": TaskState.QUEUED.value, "session_id": session_id})
    sql = (
        f"SELECT * FROM tasks{where} "
        "ORDER BY priority DESC, scheduled_for, created_at LIMIT %(limit)s"
    )
    return conn.execute(sql, {**params, "limit": limit}).fetchall()


def list_by_goal(conn: psycopg.Connection[Any], goal_id: uuid.UUID, limit: int) -> list[Any]:
    sql = "SELECT * FROM tasks WHERE goal_id = %s ORDER BY step_index LIMIT %s"
    return conn.execute(sql, (goal_id, limit)).fetchall()


def _events(conn: psycopg.Connection[Any], column: str, key: uuid.UUID, limit: int) -> list[Any]:
    sql = f"SELECT * FROM task_events WHERE {column} = %s ORDER BY id DESC LIMIT %s"
    return conn.execute(sql, (key, limit)).fetchall()


def task_events(conn: psycopg.Connection[Any], task_id: uuid.UUID, limit: int) -> list[Any]:
    """Newest first."""
    return _events(conn, "task_id", task_id, limit)


def goal_events(conn: psycopg.Connection[Any], goal_id: uuid.UUID, limit: int) -> list[Any]:
    """Every event of a goal and its steps, newest first."""
    return _events(conn, "goal_id", goal_id, limit)


# -- goals (jobs.queries) ---------------------------------------------------------------------


def get_goal(conn: psycopg.Connection[Any], goal_id: uuid.UUID) -> Any | None:
    return conn.execute("SELECT * FROM goals WHERE id = %s", (goal_id,)).fetchone()


def list_goals(
    conn: psycopg.Connection[Any],
    *,
    user_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Any]:
    where, params = _where({"user_id": user_id, "status": status})
    sql = f"SELECT * FROM goals{where} ORDER BY created_at DESC, id LIMIT %(limit)s"
    return conn.execute(sql, {**params, "limit": limit}).fetchall()


# -- stats (jobs.queries.stats, jobs.breaker.open_breakers, jobs.pull.agents) -----------------


def stats(conn: psycopg.Connection[Any], *, session_id: str | None = None) -> dict[str, Any]:
    """Counts by state, and average wait and processing time over completed tasks."""
    where, params = _where({"session_id": session_id})
    counts = {state.value: 0 for state in TaskState}
    by_state = f"SELECT state, count(*) AS n FROM tasks{where} GROUP BY state"
    for row in conn.execute(by_state, params):
        counts[TaskState(row.state).value] = int(row.n)
    done, params = _where({"state": TaskState.COMPLETED.value, "session_id": session_id})
    row = conn.execute(
        "SELECT avg(extract(epoch FROM started_at - scheduled_for)) AS wait, "
        "avg(extract(epoch FROM finished_at - started_at)) AS work, count(*) AS n "
        f"FROM tasks{done}",
        params,
    ).fetchone()
    assert row is not None
    return {
        "counts": counts,
        "avg_wait_ms": None if row.wait is None else round(float(row.wait) * 1000, 3),
        "avg_processing_ms": None if row.work is None else round(float(row.work) * 1000, 3),
        "completed": int(row.n),
    }


def open_breakers(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    sql = (
        "SELECT name, state, consecutive_failures, opened_at, retry_at, trial_task_id "
        "FROM circuit_breakers WHERE state != 'closed' ORDER BY name"
    )
    return [r._asdict() for r in conn.execute(sql)]


def agents(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Each pulling agent's last pull and the task it is running, if any."""
    sql = (
        "SELECT p.agent_id, p.last_pull_at, p.last_task_id, p.pulls, "
        "(SELECT t.id FROM tasks t WHERE t.state = 'running' AND t.worker_id = p.agent_id "
        " LIMIT 1) AS running FROM agent_pulls p ORDER BY p.last_pull_at DESC"
    )
    return [r._asdict() for r in conn.execute(sql)]


# -- approvals (jobs.approvals.list_pending, pending_count) -----------------------------------


def pending_approvals(
    conn: psycopg.Connection[Any], *, user_id: str | None = None, limit: int = 50
) -> tuple[list[Any], int]:
    """Pending approvals, newest first, and how many there are."""
    where, params = _where({"state": TaskState.PENDING_APPROVAL.value, "user_id": user_id})
    rows = conn.execute(
        f"SELECT * FROM tasks{where} ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {**params, "limit": limit},
    ).fetchall()
    total = conn.execute(f"SELECT count(*) AS n FROM tasks{where}", params).fetchone()
    assert total is not None
    return rows, int(total.n)


# -- sessions (jobs.sessions.list_sessions, paused_queues; jobs.budgets.describe) -------------

_BUDGET = (
    "SELECT session_id, max_tokens, max_cost, max_tasks, on_exceed, tokens_used, cost_used, "
    "tasks_used, (max_tokens IS NOT NULL AND tokens_used >= max_tokens) "
    "OR (max_cost IS NOT NULL AND cost_used >= max_cost) "
    "OR (max_tasks IS NOT NULL AND tasks_used > max_tasks) AS exceeded "
    "FROM session_budgets WHERE session_id = ANY(%s)"
)


def list_sessions(conn: psycopg.Connection[Any], *, user_id: str | None = None) -> list[Any]:
    """Every session that has a row or a task (of ``user_id``: owned by them, or holding
    their tasks), with its task counts per state and its budget."""
    where, params = _where({"user_id": user_id})
    where = f"{where} AND session_id IS NOT NULL" if where else " WHERE session_id IS NOT NULL"
    counts: dict[str, dict[str, int]] = {}
    for row in conn.execute(
        f"SELECT session_id, state, count(*) AS n FROM tasks{where} GROUP BY session_id, state",
        params,
    ):
        counts.setdefault(str(row.session_id), {})[TaskState(row.state).value] = int(row.n)
    sql = "SELECT id, user_id, concurrency, paused, labels FROM agent_sessions"
    found = conn.execute(
        sql if user_id is None else f"{sql} WHERE user_id = %s OR id = ANY(%s)",
        () if user_id is None else (user_id, list(counts)),
    )
    out = {row.id: {**row._asdict(), "labels": dict(row.labels or {})} for row in found}
    for session_id in counts:
        out.setdefault(
            session_id,
            {"id": session_id, "user_id": None, "concurrency": None, "paused": False, "labels": {}},
        )
    budgets = {}
    for row in conn.execute(_BUDGET, (list(out),)):
        budget = row._asdict()
        del budget["session_id"]
        budgets[row.session_id] = {
            **budget,
            "tokens_used": int(row.tokens_used),
            "cost_used": float(row.cost_used),
            "tasks_used": int(row.tasks_used),
        }
    default = get_settings().session_concurrency
    for entry in out.values():
        entry["counts"] = counts.get(entry["id"], {})
        entry["window"] = entry["concurrency"] or default
        entry["budget"] = budgets.get(entry["id"])
    return sorted(out.values(), key=lambda e: e["id"])


def paused_queues(conn: psycopg.Connection[Any]) -> list[str]:
    return [row.queue for row in conn.execute("SELECT queue FROM queue_pauses ORDER BY queue")]


# -- task lists (jobs.tasklists.status: list_status, all_lists, graph_nodes) ------------------

_ITEMS = (
    "SELECT i.*, t.state, t.attempts, t.started_at, t.finished_at, t.last_error, t.session_id "
    "FROM task_list_items i LEFT JOIN tasks t ON t.id = i.task_id "
    "WHERE i.list_id = %s ORDER BY i.position, i.item_id"
)


def _list(conn: psycopg.Connection[Any], path: str) -> rows.ListRow | None:
    found = conn.execute("SELECT * FROM task_lists WHERE path = %s", (path,)).fetchone()
    return None if found is None else rows.ListRow.from_row(found)


def _items(conn: psycopg.Connection[Any], list_id: uuid.UUID) -> list[rows.StoredItem]:
    return [rows.item_from_row(r) for r in conn.execute(_ITEMS, (list_id,))]


def list_status(conn: psycopg.Connection[Any], path: str) -> report.ListStatusReport:
    from jobs.tasklists import report

    lst = _list(conn, path)
    if lst is None:
        raise rows.not_loaded(path)
    active = conn.execute(
        "SELECT * FROM v_active_queue WHERE list_id = %s ORDER BY priority_order, position",
        (lst.id,),
    ).fetchall()
    return report.build(lst, _items(conn, lst.id), active)


def all_lists(conn: psycopg.Connection[Any]) -> list[tuple[rows.ListRow, dict[str, int]]]:
    from jobs.tasklists import report

    found = conn.execute("SELECT * FROM task_lists ORDER BY created_at").fetchall()
    return [(lst, report.counts(_items(conn, lst.id))) for lst in map(rows.ListRow.from_row, found)]


def graph_nodes(conn: psycopg.Connection[Any], path: str) -> list[graph.GraphNode]:
    from jobs.tasklists import report

    lst = _list(conn, path)
    return report.file_nodes(path) if lst is None else report.stored_nodes(_items(conn, lst.id))
