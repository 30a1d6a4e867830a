"""Tasks over HTTP against real workers: enqueue, wait, read, page, steer."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select

from models import Task, TaskEvent
from models.db import transaction
from tests.support.services import wait_for

pytestmark = pytest.mark.usefixtures("cluster", "clean")


def _rows() -> tuple[int, int]:
    with transaction() as conn:
        tasks = conn.execute(select(func.count()).select_from(Task)).scalar_one()
        events = conn.execute(select(func.count()).select_from(TaskEvent)).scalar_one()
    return int(tasks), int(events)


def test_enqueue_and_wait_returns_the_outcome(alice: httpx.Client) -> None:
    # when: a task is enqueued with ?wait
    r = alice.post("/api/tasks?wait=30", json={"name": "t.add", "args": [2, 3]})
    # then: the answer carries the finished task
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["state"] == "completed" and task["result"] == 5
    assert task["user_id"] == "alice" and task["attempts"] == 1
    for key in (
        "id",
        "name",
        "state",
        "session_id",
        "priority",
        "args",
        "kwargs",
        "result",
        "error",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    ):
        assert key in task
    assert alice.get(f"/api/tasks/{task['id']}").json()["state"] == "completed"
    events = alice.get(f"/api/tasks/{task['id']}/events").json()["items"]
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "task_created" and kinds[-2:] == ["task_started", "task_completed"]


def test_enqueue_without_wait_answers_at_once(alice: httpx.Client) -> None:
    r = alice.post(
        "/api/tasks", json={"name": "t.sleep", "args": [0.3], "session_id": "s1", "priority": 5}
    )
    assert r.status_code == 201
    body = r.json()
    assert body["state"] in ("queued", "running") and body["session_id"] == "s1"
    assert body["priority"] == 5
    final = wait_for(
        lambda: alice.get(f"/api/tasks/{body['id']}").json()["state"] == "completed", 30, "done"
    )
    assert final


def test_wait_that_runs_out_answers_202_with_the_running_task(alice: httpx.Client) -> None:
    r = alice.post("/api/tasks?wait=0.3", json={"name": "t.sleep", "args": [3]})
    assert r.status_code == 202
    assert r.json()["state"] in ("queued", "running")


def test_list_is_cursor_paged_and_filtered(alice: httpx.Client) -> None:
    # given: 7 tasks in two sessions (countdown keeps them queued)
    made = [
        alice.post(
            "/api/tasks",
            json={"name": "t.noop", "session_id": f"page-{i % 2}", "countdown": 3600},
        ).json()["id"]
        for i in range(7)
    ]
    # when: reading pages of 3
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = alice.get("/api/tasks", params=params).json()
        seen += [t["id"] for t in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # then: every task once, newest first, in 3 pages
    assert pages == 3 and seen == list(reversed(made))
    only = alice.get("/api/tasks", params={"session_id": "page-0", "state": "queued"}).json()
    assert {t["id"] for t in only["items"]} == set(made[0::2])
    assert alice.get("/api/tasks", params={"name": "t.add"}).json()["items"] == []
    later = alice.get("/api/tasks", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later["items"] == []
    until = alice.get("/api/tasks", params={"until": "2000-01-01T00:00:00"}).json()
    assert until["items"] == []


def test_cancel_then_illegal_transition_is_409_and_writes_nothing(alice: httpx.Client) -> None:
    task = alice.post("/api/tasks", json={"name": "t.noop", "countdown": 3600}).json()
    r = alice.post(f"/api/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    before = _rows()
    again = alice.post(f"/api/tasks/{task['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"
    requeue = alice.post(f"/api/tasks/{task['id']}/requeue")
    assert requeue.status_code == 409
    assert _rows() == before


def test_requeue_a_failed_task(alice: httpx.Client) -> None:
    task = alice.post("/api/tasks?wait=30", json={"name": "t.permanent", "max_retries": 0}).json()
    assert task["state"] == "failed" and "bad input" in task["error"]
    r = alice.post(f"/api/tasks/{task['id']}/requeue")
    assert r.status_code == 200 and r.json()["state"] in ("queued", "running", "failed")


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (dict(content=b'{"name": "t.add", "args": [1,'), 400, "malformed_json"),
        (dict(json={"name": "t.add", "args": "1,2"}), 422, "invalid_request"),
        (dict(json={"name": "t.add", "priority": "5"}), 422, "invalid_request"),
        (dict(json={"name": "t.add", "priority": 9}), 422, "invalid_request"),
        (dict(json={"name": "t.add", "surprise": 1}), 422, "invalid_request"),
        (dict(json={"name": "no.such.task"}), 422, "unknown_task"),
        (dict(json={"name": "t.add", "args": [1]}), 422, "invalid_input"),
        (dict(json={"name": "t.add", "args": ["a\u0000b", 1]}), 422, "invalid_request"),
        (dict(json={"name": "t.add", "args": [1, 2], "countdown": 1e300}), 422, "invalid_request"),
        (
            dict(content=b'{"name": "t.noop", "args": [' + b"1," * 700_000 + b"1]}"),
            413,
            "payload_too_large",
        ),
        (dict(content=b"[" * 5000 + b"]" * 5000), 400, "malformed_json"),
    ],
)
def test_bad_input_is_a_4xx_that_writes_nothing(
    alice: httpx.Client, send: dict, status: int, code: str
) -> None:
    before = _rows()
    headers = {"Content-Type": "application/json"}
    r = alice.post("/api/tasks", headers=headers, **send)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["detail"]
    assert _rows() == before


def test_unknown_ids_are_404(alice: httpx.Client) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"/api/tasks/{missing}"),
        ("GET", f"/api/tasks/{missing}/events"),
        ("POST", f"/api/tasks/{missing}/cancel"),
        ("POST", f"/api/tasks/{missing}/requeue"),
        ("POST", f"/api/tasks/{missing}/approve"),
        ("POST", f"/api/tasks/{missing}/deny"),
        ("GET", f"/api/goals/{missing}"),
        ("DELETE", f"/api/goals/{missing}"),
        ("POST", "/api/sessions/nobody-here/cancel"),
    ]:
        r = alice.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"] == "not_found"
    assert alice.get("/api/tasks/not-a-uuid").status_code == 422
    bad_cursor = alice.get("/api/tasks", params={"cursor": "AAAA"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["error"] == "invalid_input"
