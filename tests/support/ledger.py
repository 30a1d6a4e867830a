"""Reading the ledger from tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from jobs import queries
from models import Task, TaskEvent, TaskState
from models.db import transaction
from tests.support.services import wait_for


def tolerant(fn: Callable[[], Any]) -> Callable[[], Any]:
    """A predicate that reads Postgres while Postgres may be restarting (False meanwhile)."""

    def check() -> Any:
        try:
            return fn()
        except OperationalError:
            return False

    return check


def task(task_id: uuid.UUID | str) -> Any:
    with transaction() as conn:
        return queries.get_task(conn, uuid.UUID(str(task_id)))


def events(task_id: uuid.UUID | str) -> list[Any]:
    """Oldest first."""
    with transaction() as conn:
        return list(reversed(queries.task_events(conn, uuid.UUID(str(task_id)), limit=1000)))


def event_types(task_id: uuid.UUID | str) -> list[str]:
    return [e.event_type for e in events(task_id)]


def wait_state(task_id: uuid.UUID | str, *states: TaskState, timeout: float = 30) -> Any:
    def reached() -> Any:
        row = task(task_id)
        return row if row.state in states else None

    return wait_for(reached, timeout, f"task {task_id} to reach {states}")


def count(*where: Any) -> int:
    with transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(Task).where(*where)).scalar_one())


def count_events(*where: Any) -> int:
    with transaction() as conn:
        return int(
            conn.execute(select(func.count()).select_from(TaskEvent).where(*where)).scalar_one()
        )


def completed_events_per_task() -> dict[uuid.UUID, int]:
    with transaction() as conn:
        rows = conn.execute(
            select(TaskEvent.task_id, func.count())
            .where(TaskEvent.event_type == "task_completed")
            .group_by(TaskEvent.task_id)
        )
        return {r[0]: int(r[1]) for r in rows}
