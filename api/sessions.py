"""/api/sessions: a session's counts and progress; cancel all, pause, resume."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.auth import CurrentUser
from api.deps import Cursor, Limit, celery_app
from api.errors import COMMON, responses
from api.schemas import Progress, SessionCancelled, SessionOut, SessionPage
from api.tokens import User
from jobs import errors, listing
from models.db import transaction

router = APIRouter(prefix="/api/sessions", tags=["sessions"], responses=COMMON)
SessionId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00/]+$")]
UNFINISHED = ("pending_approval", "blocked", "queued", "running", "retry_wait")


def _out(session: dict[str, Any]) -> SessionOut:
    counts: dict[str, int] = dict(session.get("counts") or {})
    return SessionOut(
        id=str(session["id"]),
        user_id=session.get("user_id"),
        paused=bool(session.get("paused", False)),
        concurrency=session.get("concurrency"),
        counts=counts,
        progress=Progress.of(counts),
        unfinished=sum(counts.get(s, 0) for s in UNFINISHED),
        budget=session.get("budget"),
    )


def visible_sessions(user: User) -> list[dict[str, Any]]:
    """The user's sessions by id, with counts (admins: all)."""
    from jobs import sessions

    with transaction() as conn:
        mine = sessions.list_sessions(conn, user_id=user.scope)
        if user.admin:
            return mine
        # A session row made by a pause has no owner yet: take its flags from the full list.
        rows = {s["id"]: s for s in sessions.list_sessions(conn)}
    return [
        {**rows.get(s["id"], {}), "counts": s["counts"], "id": s["id"], "budget": s.get("budget")}
        for s in mine
    ]


def _one(session_id: str, user: User) -> dict[str, Any]:
    for session in visible_sessions(user):
        if session["id"] == session_id:
            return session
    raise errors.NotFound(f"no session {session_id}")


@router.get("", response_model=SessionPage, operation_id="listSessions")
def list_sessions(user: CurrentUser, limit: Limit = 50, cursor: Cursor = None) -> SessionPage:
    """Sessions by id, with counts by state and progress."""
    found = visible_sessions(user)
    if cursor:
        (after,) = listing.decode_cursor(cursor, [str])
        found = [s for s in found if s["id"] > after]
    page, more = found[:limit], len(found) > limit
    return SessionPage(
        items=[_out(s) for s in page],
        limit=limit,
        next_cursor=listing.encode_cursor(page[-1]["id"]) if more else None,
    )


@router.get("/{session_id}", response_model=SessionOut, operation_id="getSession")
def get_session(session_id: SessionId, user: CurrentUser) -> SessionOut:
    return _out(_one(session_id, user))


@router.post("/{session_id}/cancel", response_model=SessionCancelled, operation_id="cancelSession")
def cancel_session(session_id: SessionId, user: CurrentUser) -> SessionCancelled:
    """Cancel every unfinished task of the session (the monitor's "Cancel all")."""
    from jobs import bulk

    _one(session_id, user)
    scope: dict[str, Any] = {} if user.admin else {"user_id": user.id}
    n = bulk.cancel_where(celery_app(), by=user.id, session_id=session_id, **scope)
    return SessionCancelled(session_id=session_id, cancelled=int(n))


@router.post(
    "/{session_id}/pause",
    response_model=SessionOut,
    operation_id="pauseSession",
    responses=responses(409),
)
def pause_session(session_id: SessionId, user: CurrentUser) -> SessionOut:
    """Nothing new of the session starts until it is resumed; running tasks finish."""
    from jobs import sessions

    _one(session_id, user)
    sessions.pause_session(celery_app(), session_id, by=user.id)
    return _out(_one(session_id, user))


@router.post(
    "/{session_id}/resume",
    response_model=SessionOut,
    operation_id="resumeSession",
    responses=responses(409),
)
def resume_session(session_id: SessionId, user: CurrentUser) -> SessionOut:
    from jobs import sessions

    _one(session_id, user)
    sessions.resume_session(celery_app(), session_id, by=user.id)
    return _out(_one(session_id, user))
