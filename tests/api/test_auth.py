"""Bearer tokens: no token is 401; users see only their own work (404 otherwise); admins
see everything; tokens are stored hashed and never logged; the monitor's cookie hand-off."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import select

from api.tokens import token_hash
from models import ApiToken
from models.db import transaction
from tests.api.support import Tokens
from tests.support.services import ROOT

pytestmark = pytest.mark.usefixtures("cluster", "clean")


def test_no_token_or_a_wrong_one_is_401(anonymous: httpx.Client, api_url: str) -> None:
    for method, path in [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/stats"),
        ("GET", "/api/sessions"),
        ("GET", "/api/goals"),
        ("GET", "/api/approvals"),
        ("GET", "/api/tasks/stream"),
    ]:
        r = anonymous.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.json()["error"] == "unauthorized"
    wrong = httpx.get(f"{api_url}/api/tasks", headers={"Authorization": "Bearer tl_nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown or revoked token"
    # open: liveness, readiness, metrics, the OpenAPI document
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path


def test_users_see_only_their_own_work(
    alice: httpx.Client, bob: httpx.Client, admin: httpx.Client
) -> None:
    # given: a task and a goal of alice's in her session
    task = alice.post(
        "/api/tasks", json={"name": "t.noop", "session_id": "alice-s", "countdown": 3600}
    ).json()
    goal = alice.post(
        "/api/goals", json={"title": "g", "steps": [{"name": "t.noop"}], "start": False}
    ).json()
    # then: bob gets 404 for each of them, exactly like an unknown id, and lists nothing
    for method, path in [
        ("GET", f"/api/tasks/{task['id']}"),
        ("GET", f"/api/tasks/{task['id']}/events"),
        ("POST", f"/api/tasks/{task['id']}/cancel"),
        ("POST", f"/api/tasks/{task['id']}/requeue"),
        ("POST", f"/api/tasks/{task['id']}/approve"),
        ("GET", f"/api/goals/{goal['id']}"),
        ("PATCH", f"/api/goals/{goal['id']}"),
        ("DELETE", f"/api/goals/{goal['id']}"),
        ("POST", f"/api/goals/{goal['id']}/resume"),
        ("GET", "/api/sessions/alice-s"),
        ("POST", "/api/sessions/alice-s/cancel"),
        ("POST", "/api/sessions/alice-s/pause"),
    ]:
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        r = bob.request(method, path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"] == "not_found"
    assert bob.get("/api/tasks").json()["items"] == []
    assert bob.get("/api/goals").json()["items"] == []
    assert bob.get("/api/sessions").json()["items"] == []
    assert bob.get("/api/stats").json()["counts"]["queued"] == 0
    # and alice's task is untouched; the admin sees it all
    assert alice.get(f"/api/tasks/{task['id']}").json()["state"] == "queued"
    assert task["id"] in {t["id"] for t in admin.get("/api/tasks").json()["items"]}
    assert "alice-s" in {s["id"] for s in admin.get("/api/sessions").json()["items"]}
    assert admin.get(f"/api/goals/{goal['id']}").status_code == 200


def test_cleanup_needs_an_admin(alice: httpx.Client, admin: httpx.Client) -> None:
    r = alice.post("/api/cleanup", json={"days": 30, "dry_run": True})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    done = alice.post("/api/tasks?wait=30", json={"name": "t.noop"}).json()
    assert done["state"] == "completed"
    dry = admin.post("/api/cleanup", json={"days": 0, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert sum(dry.json()["result"].values()) >= 1
    assert alice.get(f"/api/tasks/{done['id']}").status_code == 200  # dry run deleted nothing
    real = admin.post("/api/cleanup", json={"days": 0, "dry_run": False})
    assert real.status_code == 200 and sum(real.json()["result"].values()) >= 1
    assert alice.get(f"/api/tasks/{done['id']}").status_code == 404


def test_tokens_are_stored_hashed(tokens: Tokens) -> None:
    with transaction() as conn:
        stored = set(conn.execute(select(ApiToken.token_hash)).scalars())
    assert token_hash(tokens.alice) in stored
    assert tokens.alice not in stored and all(len(h) == 64 for h in stored)


def test_token_create_prints_the_token_alone_on_its_last_line(api_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "create", "--user", "carol", "--admin"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("tl_") and " " not in token
    me = httpx.get(f"{api_url}/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "create", "--user", " "],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout


def test_monitor_moves_the_token_into_an_httponly_cookie_and_never_logs_it(
    api_url: str, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    access = logging.getLogger("uvicorn.access")
    old_level, access.disabled = access.level, False
    access.setLevel(logging.INFO)
    try:
        with httpx.Client(base_url=api_url) as browser:
            assert browser.get("/tasks").status_code == 401
            first = browser.get(f"/tasks?token={tokens.alice}&x=1")
            assert first.status_code == 303 and first.headers["location"] == "/tasks?x=1"
            cookie = first.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
            page = browser.get("/tasks")
            assert (
                page.status_code == 200 and "alice" in page.text and tokens.alice not in page.text
            )
            # the cookie works for the API the page calls, also for writes from this origin
            assert browser.get("/api/tasks").status_code == 200
            foreign = browser.post(
                "/api/sessions/x/cancel", headers={"Origin": "https://evil.example"}
            )
            assert foreign.status_code == 403
            assert browser.get("/tasks?token=tl_wrong").status_code == 401
            browser.get("/api/tasks", headers={"Authorization": f"Bearer {tokens.bob}"})
    finally:
        access.setLevel(old_level)
    # the server's own log (httpx, the test's client, logs its URLs too: not ours)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("uvicorn"))
    assert "/tasks?token=[redacted]" in logged  # the request was logged...
    assert tokens.alice not in logged and tokens.bob not in logged  # ...without the token
