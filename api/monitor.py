"""The task monitor at /tasks (seed 002 11.5): server-rendered HTML plus one small script.

No build step: ``api/static/monitor.js`` talks to the same JSON API and listens
to the SSE stream. ``/tasks?token=…`` is accepted once: the token moves into an
HttpOnly, SameSite=Strict cookie and the browser is sent to the same URL
without it, so the token leaves the address bar and the history.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.auth import COOKIE
from api.tokens import User, lookup
from models.db import transaction

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).parent / "static"
COOKIE_MAX_AGE_S = 30 * 86400
STATE_LABELS = [
    ("queued", "queued"),
    ("running", "running"),
    ("pending_approval", "pending approval"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
]


def mount_static(app: FastAPI) -> None:
    app.mount("/monitor/static", StaticFiles(directory=STATIC), name="monitor-static")


def _user_from_cookie(request: Request) -> User | None:
    token = request.cookies.get(COOKIE)
    return lookup(token) if token else None


@router.get("/tasks", response_model=None)
def monitor(request: Request) -> Response:
    token = request.query_params.get("token")
    if token is not None:
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = "/tasks" + (f"?{urlencode(rest)}" if rest else "")
        if lookup(token) is None:
            return _login_page("That token is unknown or revoked.", status=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response
    user = _user_from_cookie(request)
    if user is None:
        return _login_page("Open the link `taskledger up` printed, or /tasks?token=<token>.")
    return HTMLResponse(_page(user), headers={"Cache-Control": "no-store"})


@router.get("/tasks/logout")
def logout() -> Response:
    response = RedirectResponse("/tasks", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _login_page(message: str, status: int = 401) -> HTMLResponse:
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>taskledger: sign in</title><link rel="stylesheet" href="/monitor/static/monitor.css"></head>
<body><main class="login"><h1>taskledger</h1><p>{html.escape(message)}</p>
<p>Create a token with <code>taskledger token create --user YOU</code>.</p></main></body></html>"""
    return HTMLResponse(body, status_code=status)


def _initial_sessions(user: User) -> tuple[list[dict[str, Any]], int]:
    from api.sessions import visible_sessions
    from jobs import approvals

    found = visible_sessions(user)[:50]
    with transaction() as conn:
        pending = approvals.pending_count(conn, user_id=user.scope)
    return found, pending


def _session_card(session: dict[str, Any]) -> str:
    counts: dict[str, int] = session["counts"]
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "skipped"))
    sid = html.escape(session["id"])
    chips = "".join(
        f'<span class="chip {key}" data-count="{key}">{label} <b>{counts.get(key, 0)}</b></span>'
        for key, label in STATE_LABELS
    )
    pct = 0 if total == 0 else round(100 * done / total)
    return (
        f'<section class="session" data-session="{sid}"><header><h3>{sid}</h3>'
        f'<span class="progress-text">Processing {done}/{total}</span></header>'
        f'<div class="bar"><i style="width:{pct}%"></i></div><div class="chips">{chips}</div>'
        f'<div class="actions"><button class="cancel-all danger">Cancel all</button>'
        f'<button class="filter-session">Show tasks</button></div></section>'
    )


def _page(user: User) -> str:
    sessions, pending = _initial_sessions(user)
    cards = "".join(_session_card(s) for s in sessions) or '<p class="empty">No sessions yet.</p>'
    options = "".join(
        f'<option value="{key}">{label}</option>'
        for key, label in [
            *STATE_LABELS,
            ("blocked", "blocked"),
            ("retry_wait", "retry wait"),
            ("skipped", "skipped"),
        ]
    )
    who = html.escape(user.id) + (" (admin)" if user.admin else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>taskledger · tasks</title>
<link rel="stylesheet" href="/monitor/static/monitor.css"></head>
<body>
<nav class="top"><strong>taskledger</strong>
  <a href="#tasks" data-view="tasks">Tasks</a>
  <a href="#goals" data-view="goals">Goals</a>
  <a href="#approvals" data-view="approvals">Approvals
    <span id="badge" class="badge{" zero" if pending == 0 else ""}"
      title="tasks waiting for approval">{pending}</span></a>
  <span class="spacer"></span><span id="live" class="live off">connecting…</span>
  <span class="who">{who}</span> <a href="/tasks/logout">sign out</a></nav>
<main>
<section id="view-tasks" class="view">
  <h2>Sessions</h2><div id="sessions" class="sessions">{cards}</div>
  <button id="more-sessions" class="link" hidden>more sessions…</button>
  <h2>Tasks</h2>
  <form id="filters" class="filters">
    <label>state <select name="state"><option value="">any</option>{options}</select></label>
    <label>session <input name="session_id" placeholder="session id"></label>
    <label>name <input name="name" placeholder="task name"></label>
    <label>from <input name="since" type="datetime-local" step="1"></label>
    <label>to <input name="until" type="datetime-local" step="1"></label>
    <button type="submit">Filter</button> <button type="reset">Clear</button>
  </form>
  <table id="tasks" class="tasks"><thead><tr><th>task</th><th>name</th><th>session</th>
    <th>state</th><th>prio</th><th>attempts</th><th>created</th><th></th></tr></thead>
    <tbody></tbody></table>
  <div class="pager"><button id="newer" disabled>&lsaquo; newer</button>
    <span id="page-info"></span><button id="older" disabled>older &rsaquo;</button></div>
</section>
<section id="view-goals" class="view" hidden><h2>Goals</h2><div id="goals"></div>
  <button id="more-goals" class="link" hidden>more goals…</button></section>
<section id="view-goal" class="view" hidden></section>
<section id="view-approvals" class="view" hidden><h2>Waiting for approval</h2>
  <div id="approvals"></div></section>
</main>
<aside id="detail" class="detail" hidden></aside>
<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>
  <menu><button value="cancel">Keep them</button>
  <button value="ok" id="confirm-ok" class="danger">Cancel tasks</button></menu></form></dialog>
<div id="toast" class="toast" hidden></div>
<script src="/monitor/static/monitor.js" defer></script>
</body></html>"""
