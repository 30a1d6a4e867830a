"""/api/tasks and /api/approvals: enqueue, read, steer. Every write is a jobs/ function."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import CurrentUser
from api.deps import Conn, Cursor, Limit, Text, celery_app
from api.errors import COMMON, responses
from api.schemas import (
    Approval,
    ApprovalPage,
    Denial,
    EventOut,
    EventPage,
    TaskCreate,
    TaskOut,
    TaskPage,
)
from api.tokens import User
from jobs import errors, listing
from models import TaskState
from models.db import transaction

router = APIRouter(prefix="/api", tags=["tasks"], responses=COMMON)
MAX_WAIT_S = 300.0


ISO_TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
Time = Annotated[
    str | None,
    Query(
        pattern=ISO_TIME,
        max_length=40,
        description="ISO 8601 time (UTC unless it says otherwise)",
        json_schema_extra={"format": "date-time"},
    ),
]


def _time(value: str | None, what: str) -> datetime | None:
    """Only ISO 8601 text: a bare number is not a time here (pydantic would take it as epoch)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidOption(f"{what} must be an ISO 8601 time; got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _link(operation: str, parameter: str, source: str = "$response.body#/id") -> dict[str, Any]:
    return {"operationId": operation, "parameters": {parameter: source}}


TASK_LINKS = {
    "GetTask": _link("getTask", "task_id"),
    "TaskEvents": _link("taskEvents", "task_id"),
    "CancelTask": _link("cancelTask", "task_id"),
    "RequeueTask": _link("requeueTask", "task_id"),
    "ApproveTask": _link("approveTask", "task_id"),
    "DenyTask": _link("denyTask", "task_id"),
    "GetSession": _link("getSession", "session_id", "$response.body#/session_id"),
    "PauseSession": _link("pauseSession", "session_id", "$response.body#/session_id"),
    "ResumeSession": _link("resumeSession", "session_id", "$response.body#/session_id"),
    "CancelSession": _link("cancelSession", "session_id", "$response.body#/session_id"),
}


def load_task(task_id: uuid.UUID, user: User) -> TaskOut:
    with transaction() as conn:
        return TaskOut.of(listing.get_task(conn, task_id, user_id=user.scope))


@router.post(
    "/tasks",
    status_code=201,
    response_model=TaskOut,
    operation_id="createTask",
    responses={
        201: {"description": "created", "links": TASK_LINKS},
        202: {"model": TaskOut, "description": "?wait ran out before the task finished"},
        **responses(403, 429),
    },
)
async def create_task(
    body: TaskCreate,
    user: CurrentUser,
    response: Response,
    wait: Annotated[
        float | None, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for the outcome")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=150,
            description="a repeat with the same key answers with the first task (README)",
        ),
    ] = None,
) -> TaskOut:
    """Enqueue a registered durable task (seed 002's async mode; with ``?wait=`` its sync mode)."""
    from jobs.enqueue import enqueue

    def write() -> uuid.UUID:
        handle = enqueue(
            celery_app(),
            body.name,
            body.args,
            body.kwargs,
            user_id=user.id,
            idempotency_key=idempotency_key,  # jobs/idempotency.py
            **body.options(),
        )
        return uuid.UUID(str(handle.id))

    task_id = await run_in_threadpool(write)
    if wait:
        from jobs.waiting import wait_for_final

        try:
            await run_in_threadpool(wait_for_final, task_id, wait)
        except errors.TaskTimeout:
            response.status_code = 202
    return await run_in_threadpool(load_task, task_id, user)


@router.get("/tasks", response_model=TaskPage, operation_id="listTasks")
def list_tasks(
    user: CurrentUser,
    conn: Conn,
    session_id: Text = None,
    state: TaskState | None = None,
    name: Text = None,
    since: Time = None,
    until: Time = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """Tasks newest first, cursor-paged."""
    page = listing.page_tasks(
        conn,
        user_id=user.scope,
        session_id=session_id,
        state=state,
        name=name,
        since=_time(since, "since"),
        until=_time(until, "until"),
        limit=limit,
        cursor=cursor or None,
    )
    return TaskPage(
        items=[TaskOut.of(r) for r in page.items], limit=limit, next_cursor=page.next_cursor
    )


@router.get("/tasks/{task_id}", response_model=TaskOut, operation_id="getTask")
def get_task(task_id: uuid.UUID, user: CurrentUser, conn: Conn) -> TaskOut:
    return TaskOut.of(listing.get_task(conn, task_id, user_id=user.scope))


@router.get("/tasks/{task_id}/events", response_model=EventPage, operation_id="taskEvents")
def task_events(
    task_id: uuid.UUID, user: CurrentUser, conn: Conn, limit: Limit = 100, cursor: Cursor = None
) -> EventPage:
    """The task's audit trail, oldest first."""
    listing.get_task(conn, task_id, user_id=user.scope)
    page = listing.page_events(conn, task_id, limit=limit, cursor=cursor or None)
    return EventPage(
        items=[EventOut.of(r) for r in page.items], limit=limit, next_cursor=page.next_cursor
    )


def _steer(task_id: uuid.UUID, user: User, action: Any) -> TaskOut:
    load_task(task_id, user)  # 404 before anything happens when it is not theirs
    action()
    return load_task(task_id, user)


@router.post(
    "/tasks/{task_id}/cancel",
    response_model=TaskOut,
    operation_id="cancelTask",
    responses=responses(409),
)
def cancel_task(task_id: uuid.UUID, user: CurrentUser) -> TaskOut:
    """Cancel from any unfinished state; running code gets its signal."""
    from jobs import operations

    return _steer(
        task_id,
        user,
        lambda: operations.cancel_task(celery_app(), task_id, reason=f"cancelled by {user.id}"),
    )


@router.post(
    "/tasks/{task_id}/requeue",
    response_model=TaskOut,
    operation_id="requeueTask",
    responses=responses(409),
)
def requeue_task(task_id: uuid.UUID, user: CurrentUser) -> TaskOut:
    """Put a failed task back in the queue with a fresh retry budget."""
    from jobs import operations

    return _steer(task_id, user, lambda: operations.requeue(celery_app(), task_id))


@router.post(
    "/tasks/{task_id}/approve",
    response_model=TaskOut,
    operation_id="approveTask",
    responses=responses(409),
)
def approve_task(task_id: uuid.UUID, user: CurrentUser, body: Approval | None = None) -> TaskOut:
    """Approve a task waiting for approval, optionally replacing its args and kwargs."""
    from jobs import approvals

    body = body or Approval()
    return _steer(
        task_id,
        user,
        lambda: approvals.approve(
            celery_app(), task_id, by=user.id, args=body.args, kwargs=body.kwargs
        ),
    )


@router.post(
    "/tasks/{task_id}/deny",
    response_model=TaskOut,
    operation_id="denyTask",
    responses=responses(409),
)
def deny_task(task_id: uuid.UUID, user: CurrentUser, body: Denial | None = None) -> TaskOut:
    """Deny a task waiting for approval: it is cancelled and never runs."""
    from jobs import approvals

    reason = (body or Denial()).reason
    return _steer(
        task_id, user, lambda: approvals.deny(celery_app(), task_id, by=user.id, reason=reason)
    )


@router.get("/approvals", response_model=ApprovalPage, operation_id="listApprovals")
def list_approvals(
    user: CurrentUser, conn: Conn, limit: Limit = 50, cursor: Cursor = None
) -> ApprovalPage:
    """Tasks waiting for approval, newest first, and how many there are (the monitor's badge)."""
    from jobs import approvals

    rows = approvals.list_pending(
        conn, user_id=user.scope, limit=min(limit + 1, approvals.MAX_PAGE), cursor=cursor or None
    )
    more = len(rows) > limit or (len(rows) == limit == approvals.MAX_PAGE)
    rows = rows[:limit]
    return ApprovalPage(
        items=[TaskOut.of(r) for r in rows],
        limit=limit,
        next_cursor=str(rows[-1].id) if more and rows else None,
        pending=approvals.pending_count(conn, user_id=user.scope),
    )
