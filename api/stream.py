"""GET /api/tasks/stream: Server-Sent Events, one per task state change (sse-starlette).

Each event's SSE id is the ``task_events`` row id. A client that reconnects with
``Last-Event-ID`` (browsers do it by themselves) first gets every change after
that id from the database, then the live tail, with no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy import ColumnElement
from sse_starlette.sse import EventSourceResponse

from api.auth import CurrentUser
from api.deps import Text
from api.errors import COMMON
from api.feed import EventFeed, FeedEvent, read_events
from api.tokens import User
from models import Task, TaskEvent
from models.db import transaction

router = APIRouter(prefix="/api", tags=["tasks"], responses=COMMON)
BACKLOG_LIMIT = 50_000  # a monitor gone longer than this many changes reloads instead


def _accept(user: User, session_id: str | None) -> Any:
    def accept(event: FeedEvent) -> bool:
        if session_id is not None and event.session_id != session_id:
            return False
        return user.admin or event.user_id == user.id

    return accept


def _backlog(after: int, user: User, session_id: str | None, upto: int) -> list[FeedEvent]:
    where: list[ColumnElement[bool]] = [TaskEvent.id > after, TaskEvent.id <= upto]
    if session_id is not None:
        where.append(Task.session_id == session_id)
    if not user.admin:
        where.append(Task.__table__.c.user_id == user.id)
    with transaction() as conn:
        return read_events(conn, where, limit=BACKLOG_LIMIT, counts_user=user.scope)


def _sse(event: FeedEvent) -> dict[str, str]:
    return {"id": str(event.event_id), "event": "task", "data": json.dumps(event.data())}


@router.get(
    "/tasks/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "text/event-stream: `event: task`, `id: <event id>`, "
            "`data: {event_id, id, session_id, state, counts, ...}`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream(
    request: Request,
    user: CurrentUser,
    session_id: Text = None,
    last_event_id: Annotated[
        int | None, Header(ge=0, le=2**63 - 1, description="resume after this event id")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="same as Last-Event-ID")
    ] = None,
    once: Annotated[bool, Query(description="send the backlog, then end (for scripts)")] = False,
) -> EventSourceResponse:
    """Task state changes, live; resumable with ``Last-Event-ID``."""
    feed: EventFeed = request.app.state.feed
    await feed.started.wait()
    sub = feed.subscribe(_accept(user, session_id))
    resume_from = last_event_id if last_event_id is not None else after
    upto = feed.high

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            sent: set[int] = set()
            if resume_from is not None:
                backlog = await asyncio.to_thread(
                    _backlog, resume_from, user, session_id, max(upto, feed.high)
                )
                for event in backlog:
                    sent.add(event.event_id)
                    yield _sse(event)
            if once:
                return
            yield {"event": "ready", "data": json.dumps({"high": feed.high})}
            while True:
                item = await sub.queue.get()
                if item is None:
                    return  # fell behind: the client reconnects with Last-Event-ID
                if item.event_id in sent:
                    continue
                if resume_from is not None and item.event_id <= resume_from:
                    continue
                yield _sse(item)
        finally:
            feed.unsubscribe(sub)

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})
