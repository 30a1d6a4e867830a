"""``cli.reads`` (plain SQL for the CLI's fast start) returns what the domain queries return.

The CLI's read commands skip SQLAlchemy and ``jobs`` to start in well under 0.5 s; this
keeps their SQL from drifting away from ``jobs.queries``, ``jobs.approvals``,
``jobs.sessions``, ``jobs.breaker`` and ``jobs.pull`` on the same rows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from cli import reads
from cli.output import row_dict
from jobs import approvals, breaker, pull, queries, sessions
from models import (
    AgentPull,
    AgentSession,
    CircuitBreaker,
    Goal,
    GoalStatus,
    QueuePause,
    SessionBudget,
    Task,
    TaskEvent,
    TaskListItem,
    TaskState,
    utcnow,
)
from models.db import transaction

pytestmark = pytest.mark.usefixtures("clean")


def _add(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # one by one: the rows set different columns
        conn.execute(insert(table).values(**row))


def _task(goal: uuid.UUID | None, step: int | None, state: TaskState, **more: Any) -> dict:
    return {
        "id": uuid.uuid4(),
        "name": "t.add",
        "goal_id": goal,
        "step_index": step,
        "queue": "q",
        "state": state,
        "timeout_s": 30.0,
        **more,
    }


@pytest.fixture()
def ledger_rows() -> dict[str, Any]:
    now = utcnow()
    goal = uuid.uuid4()
    other_goal = uuid.uuid4()
    done = {
        "scheduled_for": now - timedelta(seconds=3),
        "started_at": now - timedelta(seconds=2),
        "finished_at": now - timedelta(seconds=1),
        "result": {"sum": 3},
    }
    rows = [
        _task(goal, 0, TaskState.COMPLETED, session_id="s1", user_id="ann", **done),
        _task(goal, 1, TaskState.QUEUED, session_id="s1", user_id="ann", priority=5),
        _task(goal, 2, TaskState.BLOCKED, session_id="s1", user_id="ann"),
        _task(None, None, TaskState.PENDING_APPROVAL, session_id="s2", user_id="bob"),
        _task(None, None, TaskState.PENDING_APPROVAL, user_id="ann", kwargs={"a": 1}),
        _task(None, None, TaskState.RUNNING, worker_id="agent-1", session_id="s2"),
        _task(None, None, TaskState.QUEUED, meta={"k": "v"}),
    ]
    for i, row in enumerate(rows):  # distinct, and not in insertion order
        row["created_at"] = now - timedelta(seconds=(i * 7) % 5)
    with transaction() as conn:
        _add(
            conn,
            Goal,
            [
                {"id": goal, "title": "g", "user_id": "ann", "status": GoalStatus.IN_PROGRESS},
                {"id": other_goal, "title": "h", "user_id": "bob", "status": GoalStatus.OPEN},
            ],
        )
        _add(conn, Task, rows)
        _add(
            conn,
            TaskEvent,
            [
                {"task_id": rows[0]["id"], "goal_id": goal, "event_type": "task_created"},
                {"task_id": rows[0]["id"], "goal_id": goal, "event_type": "task_completed"},
                {"task_id": None, "goal_id": goal, "event_type": "goal_created"},
            ],
        )
        _add(
            conn,
            AgentSession,
            [{"id": "s1", "user_id": "ann", "concurrency": 2, "labels": {"team": "x"}}],
        )
        _add(
            conn,
            SessionBudget,
            [{"session_id": "s1", "max_tasks": 1, "tasks_used": 3, "cost_used": 0.5}],
        )
        _add(conn, QueuePause, [{"queue": "q2", "paused_by": "me"}])
        _add(
            conn,
            CircuitBreaker,
            [
                {"name": "t.add", "state": "open", "consecutive_failures": 5, "opened_at": now},
                {"name": "t.ok", "state": "closed"},
            ],
        )
        _add(
            conn,
            AgentPull,
            [
                {"agent_id": "agent-1", "last_pull_at": now, "pulls": 4},
                {"agent_id": "agent-2", "last_pull_at": now - timedelta(minutes=1)},
            ],
        )
    return {"goal": goal, "tasks": [r["id"] for r in rows]}


def _same(ours: list[Any], theirs: list[Any]) -> None:
    assert theirs, "every case here selects some rows"
    assert [row_dict(r) for r in ours] == [row_dict(r) for r in theirs]


def test_task_and_goal_views_match_the_domain_queries(ledger_rows: dict[str, Any]) -> None:
    goal, first = ledger_rows["goal"], ledger_rows["tasks"][0]
    with transaction() as conn, reads.reading() as mine:
        for state, session in [(None, None), ("queued", None), (None, "s1"), ("queued", "s1")]:
            wanted = None if state is None else TaskState(state)
            _same(
                reads.list_tasks(mine, state=state, session_id=session, limit=5),
                queries.list_tasks(conn, state=wanted, session_id=session, limit=5),
            )
        _same(reads.peek(mine, limit=10), queries.peek(conn, limit=10))
        _same(reads.peek(mine, session_id="s1"), queries.peek(conn, session_id="s1"))
        assert row_dict(reads.get_task(mine, first)) == row_dict(queries.get_task(conn, first))
        assert reads.get_task(mine, goal) is None
        assert row_dict(reads.get_goal(mine, goal)) == row_dict(queries.get_goal(conn, goal))
        assert reads.get_goal(mine, first) is None
        _same(reads.list_by_goal(mine, goal, 1000), queries.list_by_goal(conn, goal, 1000))
        _same(reads.task_events(mine, first, 1000), queries.task_events(conn, first, 1000))
        _same(reads.goal_events(mine, goal, 1000), queries.goal_events(conn, goal, 1000))
        for user, status in [(None, None), ("ann", None), (None, "open")]:
            wanted_status = None if status is None else GoalStatus(status)
            _same(
                reads.list_goals(mine, user_id=user, status=status, limit=10),
                queries.list_goals(conn, user_id=user, status=wanted_status, limit=10),
            )


def test_stats_approvals_and_sessions_match(ledger_rows: dict[str, Any]) -> None:
    with transaction() as conn, reads.reading() as mine:
        for session in (None, "s1"):
            assert reads.stats(mine, session_id=session) == (
                queries.stats(conn, session_id=session).__dict__
            )
        assert reads.open_breakers(mine) == breaker.open_breakers(conn)
        assert reads.agents(mine) == pull.agents(conn)
        assert [a["running"] for a in reads.agents(mine)] == [ledger_rows["tasks"][5], None]
        for user in (None, "ann"):
            rows, total = reads.pending_approvals(mine, user_id=user, limit=50)
            _same(rows, approvals.list_pending(conn, user_id=user, limit=50))
            assert total == approvals.pending_count(conn, user_id=user)
            found = reads.list_sessions(mine, user_id=user)
            assert found and found == sessions.list_sessions(conn, user_id=user)
        assert reads.paused_queues(mine) == sessions.paused_queues(conn) == ["q2"]
        budget = reads.list_sessions(mine)[0]["budget"]
        assert budget is not None and budget["exceeded"] is True


LIST_FILE = """\
# Reads
## Build
- [x] P1: [R-1] Checked in the file
- [ ] P2: [R-2] Completed by a worker
- [ ] P2: [R-3] Failed (after R-2)
- [ ] P3: [R-4] Running
- [ ] P4: [R-5] Waiting on R-3 (after R-3)
- [ ] P1: [R-6] Queued
"""


@pytest.fixture()
def loaded_list(tmp_path: Any) -> str:
    from jobs import tasklists
    from tests.support import list_tasks

    path = tmp_path / "reads.md"
    path.write_text(LIST_FILE)
    tasklists.load(list_tasks.app, path, handler="tl.item", concurrency=2)
    now = utcnow()
    moves = {
        "R-2": {
            "state": TaskState.COMPLETED,
            "started_at": now - timedelta(seconds=5),
            "finished_at": now - timedelta(seconds=2),
        },
        "R-3": {"state": TaskState.FAILED, "last_error": "boom", "attempts": 2},
        "R-4": {"state": TaskState.RUNNING, "started_at": now - timedelta(seconds=1)},
        "R-6": {"state": TaskState.QUEUED},
    }
    with transaction() as conn:
        for item_id, values in moves.items():
            conn.execute(
                Task.__table__.update()
                .where(
                    Task.id
                    == select(TaskListItem.task_id)
                    .where(TaskListItem.item_id == item_id)
                    .scalar_subquery()
                )
                .values(**values)
            )
    return str(path.resolve())


def test_task_list_views_match_the_domain(loaded_list: str, tmp_path: Any) -> None:
    from jobs.tasklists import status

    with transaction() as conn, reads.reading() as mine:
        ours, theirs = reads.list_status(mine, loaded_list), status.list_status(conn, loaded_list)
        assert ours.lst == theirs.lst and ours.items == theirs.items
        assert ours.counts == theirs.counts
        assert ours.counts == {
            "total": 6,
            "completed": 2,
            "failed": 1,
            "skipped": 0,
            "running": 1,
            "waiting": 2,
        }
        _same(ours.active, theirs.active)
        mine_f, their_f = ours.forecast, theirs.forecast
        assert (mine_f.remaining, mine_f.mean_s, mine_f.samples) == (
            their_f.remaining,
            their_f.mean_s,
            their_f.samples,
        )
        assert mine_f.finish_at and their_f.finish_at
        assert abs((mine_f.finish_at - their_f.finish_at).total_seconds()) < 5
        assert reads.all_lists(mine) == status.all_lists(conn)
        assert reads.graph_nodes(mine, loaded_list) == status.graph_nodes(conn, loaded_list)
        elsewhere = str(tmp_path / "not-loaded.md")
        with open(elsewhere, "w") as f:
            f.write(LIST_FILE)
        assert reads.graph_nodes(mine, elsewhere) == status.graph_nodes(conn, elsewhere)
        with pytest.raises(Exception, match="no task list is loaded") as caught:
            reads.list_status(mine, elsewhere)
        assert type(caught.value).__name__ == "ListNotLoaded"
