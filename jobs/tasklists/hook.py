"""The one call ``jobs.execution`` makes when a goal's task leaves its window."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from jobs import goals
from jobs.tasklists import executor


def advance_goal(conn: Connection, goal_id: uuid.UUID, now: datetime) -> list[Row[Any]]:
    """A task list moves by its dependency graph (``executor``); any other goal moves to
    its next step in order (``jobs.goals``). Returns the tasks newly queued."""
    released = executor.item_left(conn, goal_id, now)
    return goals.advance(conn, goal_id, now) if released is None else released
