"""/api/goals (seed 000): goals of ordered steps; edit, resume, cancel."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection, Row

from api.auth import CurrentUser
from api.deps import Conn, Cursor, Limit, celery_app
from api.errors import COMMON, responses
from api.schemas import GoalCreate, GoalOut, GoalPage, GoalUpdate, Progress, TaskOut
from api.tokens import User
from jobs import listing
from models import GoalStatus
from models.db import transaction

router = APIRouter(prefix="/api/goals", tags=["goals"], responses=COMMON)
GOAL_LINKS = {
    name: {"operationId": op, "parameters": {"goal_id": "$response.body#/id"}}
    for name, op in [
        ("GetGoal", "getGoal"),
        ("UpdateGoal", "updateGoal"),
        ("ResumeGoal", "resumeGoal"),
        ("DeleteGoal", "deleteGoal"),
    ]
}


def _out(goal: Row[Any], counts: dict[str, int], steps: list[Row[Any]] | None) -> GoalOut:
    m = goal._mapping
    return GoalOut(
        id=m["id"],
        title=m["title"],
        description=m["description"],
        status=str(m["status"]),
        user_id=m["user_id"],
        priority=m["priority"],
        metadata=dict(m["metadata"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        progress=Progress.of(counts),
        steps=None if steps is None else [TaskOut.of(s) for s in steps],
    )


def _full(conn: Connection, goal_id: uuid.UUID, user: User) -> GoalOut:
    goal = listing.get_goal(conn, goal_id, user_id=user.scope)
    steps = listing.goal_steps(conn, goal_id)
    counts: dict[str, int] = {}
    for s in steps:
        counts[str(s.state)] = counts.get(str(s.state), 0) + 1
    return _out(goal, counts, steps)


def load_goal(goal_id: uuid.UUID, user: User) -> GoalOut:
    with transaction() as conn:
        return _full(conn, goal_id, user)


@router.post(
    "",
    status_code=201,
    response_model=GoalOut,
    operation_id="createGoal",
    responses={201: {"description": "created", "links": GOAL_LINKS}, **responses(403, 429)},
)
def create_goal(body: GoalCreate, user: CurrentUser) -> GoalOut:
    """Create a goal with its steps in order; it starts unless ``start`` is false."""
    from jobs import operations

    shared: dict[str, Any] = {"user_id": user.id}
    if body.session_id is not None:
        shared["session_id"] = body.session_id
    steps: list[operations.StepCall] = []
    for step in body.steps:
        options = dict(shared)
        for key in ("max_retries", "timeout", "priority", "metadata"):
            if getattr(step, key) is not None:
                options[key] = getattr(step, key)
        steps.append((step.name, step.args, step.kwargs, options))
    goal_id = operations.create_goal(
        celery_app(),
        title=body.title,
        steps=steps,
        user_id=user.id,
        description=body.description,
        priority=body.priority,
        metadata=body.metadata,
        start=body.start,
    )
    return load_goal(goal_id, user)


@router.get("", response_model=GoalPage, operation_id="listGoals")
def list_goals(
    user: CurrentUser,
    conn: Conn,
    state: GoalStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> GoalPage:
    """Goals newest first, with progress; ``state`` filters by goal status."""
    page = listing.page_goals(
        conn, user_id=user.scope, status=state, limit=limit, cursor=cursor or None
    )
    counts = listing.step_counts(conn, [g.id for g in page.items])
    return GoalPage(
        items=[_out(g, counts.get(g.id, {}), None) for g in page.items],
        limit=limit,
        next_cursor=page.next_cursor,
    )


@router.get("/{goal_id}", response_model=GoalOut, operation_id="getGoal")
def get_goal(goal_id: uuid.UUID, user: CurrentUser, conn: Conn) -> GoalOut:
    """A goal with its steps in order."""
    return _full(conn, goal_id, user)


@router.patch("/{goal_id}", response_model=GoalOut, operation_id="updateGoal")
def update_goal(goal_id: uuid.UUID, body: GoalUpdate, user: CurrentUser) -> GoalOut:
    """Edit title, description, priority or metadata (status moves by resume and delete)."""
    from jobs import goal_ops

    load_goal(goal_id, user)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if changes:
        goal_ops.update_goal(goal_id, changes)
    return load_goal(goal_id, user)


@router.post(
    "/{goal_id}/resume", response_model=GoalOut, operation_id="resumeGoal", responses=responses(409)
)
def resume_goal(goal_id: uuid.UUID, user: CurrentUser) -> GoalOut:
    """Carry on from the first step not done; completed steps are not replayed."""
    from jobs import operations

    load_goal(goal_id, user)
    operations.resume_goal(celery_app(), goal_id)
    return load_goal(goal_id, user)


@router.delete("/{goal_id}", response_model=GoalOut, operation_id="deleteGoal")
def delete_goal(goal_id: uuid.UUID, user: CurrentUser) -> GoalOut:
    """Cancel the goal and whatever of it is unfinished; the record and its history stay."""
    from jobs import goal_ops

    load_goal(goal_id, user)
    goal_ops.cancel_goal(celery_app(), goal_id, reason=f"goal cancelled by {user.id}")
    return load_goal(goal_id, user)
