"""What an enqueue costs Postgres, and that the one-statement insert stores what the ORM
stored: a plain ``.delay()`` is one statement committing on its own (rows and event
together); anything with hooks that write (sessions, flow controls) keeps its
transaction; ``create_tasks`` writes rows and events exactly as ``insert(tasks)`` did."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from jobs import enqueue_many
from jobs.enqueue import prepare
from jobs.errors import TaskAlreadyExists
from jobs.task_rows import created_payload
from jobs.transitions import TASKS_TABLE, create_tasks
from models import Task, TaskEvent, utcnow
from models.db import enable_statement_counting, statement_counts, transaction
from tests.support import ledger, tasks
from workers.app import app

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(autouse=True)
def _purge_what_was_published() -> Any:
    """These tests publish and leave; the next test must not find their messages in Redis."""
    yield
    app.control.purge()


def statements_of(fn: Any) -> dict[str, int]:
    enable_statement_counting()
    before = dict(statement_counts)
    fn()
    return {k: statement_counts[k] - before[k] for k in ("statements", "commits")}


def test_a_plain_delay_is_one_statement_with_its_event() -> None:
    handles: list[Any] = []
    cost = statements_of(lambda: handles.append(tasks.add.delay(1, 2)))

    assert cost == {"statements": 1, "commits": 0}  # autocommitted: no BEGIN/COMMIT
    assert ledger.event_types(handles[0].id)[:1] == ["task_created"]
    assert ledger.task(handles[0].id).args == [1, 2]


def test_a_batch_is_one_statement_too() -> None:
    calls: list[tuple[str, Any, Any, Any]] = [
        ("t.add", (i, i), {}, {"priority": 1 + i % 5}) for i in range(300)
    ]
    handles: list[Any] = []
    cost = statements_of(lambda: handles.extend(enqueue_many(app, calls)))

    assert cost == {"statements": 1, "commits": 0}
    ids = [uuid.UUID(str(h.id)) for h in handles]
    assert ledger.count(Task.id.in_(ids)) == 300
    assert (
        ledger.count_events(TaskEvent.task_id.in_(ids), TaskEvent.event_type == "task_created")
        == 300
    )


def test_hooks_that_write_keep_the_transaction() -> None:
    cost = statements_of(lambda: tasks.add.apply_async((1, 2), session_id="s-stmt"))
    assert cost["commits"] == 1 and cost["statements"] > 1  # window reservation and all

    cost = statements_of(lambda: tasks.add.apply_async((1, 2), idempotency_key="k-stmt"))
    assert cost["commits"] == 1


def test_a_duplicate_id_writes_nothing() -> None:
    task_id = str(uuid.uuid4())
    tasks.add.apply_async((1, 2), task_id=task_id)
    with pytest.raises(TaskAlreadyExists):
        enqueue_many(app, [("t.add", (3, 4), {}, {}), ("t.add", (5, 6), {}, {"task_id": task_id})])
    assert ledger.count() == 1


def test_rows_and_events_are_what_the_orm_insert_wrote() -> None:
    now = utcnow()
    options: dict[str, Any] = {
        "metadata": {"a": [1, 2.5, None, "é", {"k": True}]},
        "title": "t",
        "countdown": 5,
        "now": now,
        "priority": 4,
    }
    ours, theirs = (prepare(tasks.add, [1, 2], {}, **options) for _ in range(2))
    with transaction() as conn:
        row = theirs.row(now)
        conn.execute(insert(TASKS_TABLE), [row])
        conn.execute(
            insert(TaskEvent),
            [
                {
                    "task_id": row["id"],
                    "goal_id": None,
                    "event_type": "task_created",
                    "payload": created_payload(row, now),
                    "created_at": now,
                }
            ],
        )
        create_tasks(conn, [ours.row(now)], now)

    def stored(task_id: uuid.UUID) -> tuple[Any, ...]:
        with transaction() as conn:
            task = conn.execute(
                text(
                    "SELECT to_jsonb(t) - 'id', policy_decision IS NULL, "
                    "jsonb_typeof(policy_decision) FROM tasks t WHERE id = :i"
                ),
                {"i": task_id},
            ).one()
            events = conn.execute(
                text("SELECT to_jsonb(e) - 'id' - 'task_id' FROM task_events e WHERE task_id = :i"),
                {"i": task_id},
            ).all()
        return (*task, events)

    assert stored(ours.id) == stored(theirs.id)
    assert stored(ours.id)[2] == "null"  # JSON null, as SQLAlchemy's JSONB writes None
    with transaction() as conn:
        due = conn.execute(select(Task.scheduled_for).where(Task.id == ours.id)).scalar_one()
    assert due == now + timedelta(seconds=5)
