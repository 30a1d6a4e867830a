"""/api/lists: markdown task lists, mirroring ``taskledger lists`` (load, status, start,
pause, resume, stop, skip, requeue).

A list is named by the path of its file on the server, so these routes are for admins:
loading reads a file from the server's disk. The path goes in the body or the ``path``
query parameter (it has slashes); any spelling of the same file names the same list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import AdminUser
from api.deps import celery_app
from api.errors import COMMON, responses
from models.db import transaction

router = APIRouter(prefix="/api/lists", tags=["lists"], responses={**COMMON, **responses(403)})
FilePath = Annotated[
    str, Query(min_length=1, max_length=4096, pattern=r"^[^\x00]+$", description="the list file")
]
ItemId = Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class ListOut(BaseModel):
    path: str
    title: str
    status: str
    goal_id: str
    handler: str
    session_id: str | None
    concurrency: int
    current_item_id: str | None
    started_at: datetime | None
    paused_at: datetime | None
    stopped_at: datetime | None
    counts: dict[str, int] = Field(description="total, completed, failed, skipped, running…")


class ItemOut(BaseModel):
    item_id: str
    section: str
    position: int
    priority: str
    title: str
    dependencies: list[str]
    state: str
    attempts: int
    skip_reason: str | None
    last_error: str | None


class ListStatusOut(ListOut):
    items: list[ItemOut]
    predicted_finish_at: datetime | None
    remaining: int


class LoadIn(BaseModel):
    path: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")
    handler: str | None = Field(None, min_length=1, max_length=200)
    session_id: str | None = Field(None, min_length=1, max_length=200)
    concurrency: int | None = Field(None, ge=1, le=1000)


class LoadOut(BaseModel):
    path: str
    title: str
    created: bool
    added: list[str]
    updated: list[str]
    removed: list[str]
    total: int
    problems: list[str] = Field(description="malformed lines, as file:line: reason")


class ActionOut(BaseModel):
    path: str
    message: str


def _list_out(lst: Any, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "path": lst.path,
        "title": lst.title,
        "status": str(lst.status),
        "goal_id": str(lst.goal_id),
        "handler": lst.config.handler,
        "session_id": lst.config.session_id,
        "concurrency": lst.config.concurrency,
        "current_item_id": lst.current_item_id,
        "started_at": lst.started_at,
        "paused_at": lst.paused_at,
        "stopped_at": lst.stopped_at,
        "counts": counts,
    }


@router.get("", response_model=list[ListOut], operation_id="listTaskLists")
def all_lists(user: AdminUser) -> list[ListOut]:
    """Every loaded list with its executor state and counts."""
    from jobs.tasklists import status

    with transaction() as conn:
        return [ListOut(**_list_out(lst, c)) for lst, c in status.all_lists(conn)]


@router.post("", response_model=LoadOut, operation_id="loadTaskList")
def load(user: AdminUser, body: LoadIn) -> LoadOut:
    """Load or reload a list file (``taskledger lists load``)."""
    from jobs import tasklists

    report = tasklists.load(
        celery_app(),
        body.path,
        handler=body.handler,
        session_id=body.session_id,
        concurrency=body.concurrency,
    )
    return LoadOut(
        path=report.path,
        title=report.title,
        created=report.created,
        added=report.added,
        updated=report.updated,
        removed=report.removed,
        total=report.total,
        problems=[str(p) for p in report.problems],
    )


@router.get("/status", response_model=ListStatusOut, operation_id="taskListStatus")
def list_status(user: AdminUser, path: FilePath) -> ListStatusOut:
    """Executor state, counters, items and the predicted finish (``lists status``)."""
    from jobs.tasklists import status, store

    with transaction() as conn:
        report = status.list_status(conn, store.canonical_path(path))
    items = [
        ItemOut(
            item_id=i.item_id,
            section=i.section,
            position=i.position,
            priority=f"P{i.priority}",
            title=i.title,
            dependencies=list(i.dependencies),
            state=str(i.state),
            attempts=i.attempts,
            skip_reason=i.skip_reason,
            last_error=i.last_error,
        )
        for i in report.items
    ]
    return ListStatusOut(
        **_list_out(report.lst, report.counts),
        items=items,
        predicted_finish_at=report.forecast.finish_at,
        remaining=report.forecast.remaining,
    )


def _act(path: str, do: Any) -> ActionOut:
    from jobs.tasklists import store

    canonical = store.canonical_path(path)
    return ActionOut(path=canonical, message=do(celery_app(), canonical))


@router.post("/start", response_model=ActionOut, operation_id="startTaskList")
def start(user: AdminUser, path: FilePath) -> ActionOut:
    from jobs import tasklists

    return _act(path, tasklists.start)


@router.post("/pause", response_model=ActionOut, operation_id="pauseTaskList")
def pause(user: AdminUser, path: FilePath) -> ActionOut:
    from jobs import tasklists

    return _act(path, tasklists.pause)


@router.post("/resume", response_model=ActionOut, operation_id="resumeTaskList")
def resume(user: AdminUser, path: FilePath) -> ActionOut:
    from jobs import tasklists

    return _act(path, tasklists.resume)


@router.post("/stop", response_model=ActionOut, operation_id="stopTaskList")
def stop(user: AdminUser, path: FilePath) -> ActionOut:
    from jobs import tasklists

    return _act(path, tasklists.stop)


@router.post("/skip", response_model=ActionOut, operation_id="skipTaskListItem")
def skip(user: AdminUser, path: FilePath, item_id: ItemId) -> ActionOut:
    from jobs import tasklists

    return _act(path, lambda app, p: tasklists.skip(app, p, item_id))


@router.post("/requeue", response_model=ActionOut, operation_id="requeueTaskListItem")
def requeue(user: AdminUser, path: FilePath, item_id: ItemId) -> ActionOut:
    from jobs import tasklists

    return _act(path, lambda app, p: tasklists.requeue(app, p, item_id))
