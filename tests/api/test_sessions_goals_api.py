"""Sessions (counts, cancel all, pause, resume), goals (seed 000) and approvals over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.services import wait_for

pytestmark = pytest.mark.usefixtures("cluster", "clean")


def _state(client: httpx.Client, task_id: str) -> str:
    return str(client.get(f"/api/tasks/{task_id}").json()["state"])


def test_session_counts_progress_and_cancel_all(alice: httpx.Client) -> None:
    # given: 2 finished and 30 waiting tasks in one session
    for _ in range(2):
        alice.post("/api/tasks?wait=30", json={"name": "t.noop", "session_id": "bulk"})
    for _ in range(30):
        alice.post("/api/tasks", json={"name": "t.noop", "session_id": "bulk", "countdown": 3600})
    session = alice.get("/api/sessions/bulk").json()
    assert session["counts"]["queued"] == 30 and session["counts"]["completed"] == 2
    assert session["unfinished"] == 30
    assert session["progress"] == {"done": 2, "total": 32, "text": "Processing 2/32"}
    # when: cancel all
    r = alice.post("/api/sessions/bulk/cancel")
    # then: every unfinished task is cancelled, the finished ones stay
    assert r.status_code == 200 and r.json() == {"session_id": "bulk", "cancelled": 30}
    after = alice.get("/api/sessions/bulk").json()
    assert after["counts"] == {"completed": 2, "cancelled": 30} and after["unfinished"] == 0
    listed = alice.get("/api/sessions").json()
    assert [s["id"] for s in listed["items"]] == ["bulk"]


def test_pause_holds_new_work_and_resume_releases_it(alice: httpx.Client) -> None:
    alice.post("/api/tasks?wait=30", json={"name": "t.noop", "session_id": "p1"})
    paused = alice.post("/api/sessions/p1/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    held = alice.post("/api/tasks", json={"name": "t.add", "args": [1, 1], "session_id": "p1"})
    time.sleep(1.5)
    assert _state(alice, held.json()["id"]) == "queued"
    resumed = alice.post("/api/sessions/p1/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    wait_for(lambda: _state(alice, held.json()["id"]) == "completed", 30, "released task")


def test_goal_lifecycle(alice: httpx.Client) -> None:
    # create: three ordered steps, run in order
    r = alice.post(
        "/api/goals",
        json={
            "title": "research",
            "description": "three steps",
            "steps": [
                {"name": "t.step", "args": ["a"]},
                {"name": "t.step", "args": ["b"]},
                {"name": "t.step", "args": ["c"]},
            ],
        },
    )
    assert r.status_code == 201, r.text
    goal = r.json()
    assert [s["step_index"] for s in goal["steps"]] == [0, 1, 2]
    done = wait_for(
        lambda: (g := alice.get(f"/api/goals/{goal['id']}").json())["status"] == "completed" and g,
        60,
        "goal completed",
    )
    assert [s["result"] for s in done["steps"]] == ["a", "b", "c"]
    assert done["progress"]["text"] == "Processing 3/3"
    # list and filter
    assert [g["id"] for g in alice.get("/api/goals?state=completed").json()["items"]] == [
        goal["id"]
    ]
    assert alice.get("/api/goals?state=failed").json()["items"] == []
    # patch: descriptive fields only
    patched = alice.patch(f"/api/goals/{goal['id']}", json={"title": "renamed", "priority": 4})
    assert patched.status_code == 200 and patched.json()["title"] == "renamed"
    assert alice.patch(f"/api/goals/{goal['id']}", json={"status": "open"}).status_code == 422
    # resume of a completed goal is an illegal transition
    again = alice.post(f"/api/goals/{goal['id']}/resume")
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"


def test_delete_cancels_what_is_unfinished(alice: httpx.Client) -> None:
    goal = alice.post(
        "/api/goals",
        json={
            "title": "long",
            "steps": [{"name": "t.sleep", "args": [30]}, {"name": "t.noop"}],
            "session_id": "goal-s",
        },
    ).json()
    first = goal["steps"][0]["id"]
    wait_for(lambda: _state(alice, first) == "running", 30, "first step running")
    r = alice.delete(f"/api/goals/{goal['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled"
    assert [s["state"] for s in body["steps"]] == ["cancelled", "cancelled"]
    assert alice.get(f"/api/goals/{goal['id']}").json()["status"] == "cancelled"


def test_resume_a_failed_goal_without_replay(alice: httpx.Client, counter) -> None:
    counter.set("fail-b", 1)
    goal = alice.post(
        "/api/goals",
        json={
            "title": "flaky",
            "steps": [
                {"name": "t.step", "args": ["a"]},
                {"name": "t.step", "args": ["b"], "kwargs": {"fail_key": "fail-b"}},
            ],
        },
    ).json()
    wait_for(
        lambda: alice.get(f"/api/goals/{goal['id']}").json()["status"] == "failed", 60, "failed"
    )
    counter.delete("fail-b")
    r = alice.post(f"/api/goals/{goal['id']}/resume")
    assert r.status_code == 200
    wait_for(
        lambda: alice.get(f"/api/goals/{goal['id']}").json()["status"] == "completed", 60, "done"
    )
    assert [s.decode() for s in counter.lrange("steps", 0, -1)] == ["a", "b", "b"]


def test_approve_with_edited_args_and_deny(alice: httpx.Client) -> None:
    # given: two additions held for approval by the policy (session approve-*)
    held = [
        alice.post(
            "/api/tasks", json={"name": "t.add", "args": [1, 2], "session_id": "approve-1"}
        ).json()
        for _ in range(2)
    ]
    assert [t["state"] for t in held] == ["pending_approval"] * 2
    assert held[0]["policy_decision"]["action"] == "require_approval"
    inbox = alice.get("/api/approvals").json()
    assert inbox["pending"] == 2 and {t["id"] for t in inbox["items"]} == {t["id"] for t in held}
    # when: one approved with other arguments, one denied
    ok = alice.post(f"/api/tasks/{held[0]['id']}/approve", json={"args": [20, 22]})
    no = alice.post(f"/api/tasks/{held[1]['id']}/deny", json={"reason": "not today"})
    # then
    assert ok.status_code == 200, ok.text
    assert no.status_code == 200 and no.json()["state"] == "cancelled"
    wait_for(lambda: _state(alice, held[0]["id"]) == "completed", 30, "approved task ran")
    assert alice.get(f"/api/tasks/{held[0]['id']}").json()["result"] == 42
    assert alice.get("/api/approvals").json()["pending"] == 0
    twice = alice.post(f"/api/tasks/{held[0]['id']}/approve")
    assert twice.status_code == 409
    bad = alice.post(f"/api/tasks/{held[1]['id']}/approve", json={"args": "nope"})
    assert bad.status_code == 422


def test_a_sessions_budget_and_spend_show_in_the_api(alice: httpx.Client) -> None:
    from jobs import budgets
    from models.db import transaction

    first = alice.post("/api/tasks", json={"name": "t.noop", "session_id": "budgeted"})
    assert first.status_code in (201, 202), first.text
    with transaction() as conn:
        budgets.set_budget(conn, "budgeted", max_tokens=1000, max_tasks=5)
    alice.post("/api/tasks", json={"name": "t.noop", "session_id": "budgeted"})
    budget = alice.get("/api/sessions/budgeted").json()["budget"]
    assert budget["max_tokens"] == 1000 and budget["max_tasks"] == 5
    assert budget["tasks_used"] == 1 and budget["exceeded"] is False
    listed = {s["id"]: s for s in alice.get("/api/sessions").json()["items"]}
    assert listed["budgeted"]["budget"]["max_tasks"] == 5
