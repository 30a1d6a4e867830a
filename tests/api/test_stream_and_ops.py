"""The SSE stream (one event per state change, resumable with Last-Event-ID), health,
readiness and metrics."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx
import pytest

from tests.api.support import Tokens

pytestmark = pytest.mark.usefixtures("cluster", "clean")


def read_stream(
    url: str, token: str, out: queue.Queue[Any], stop: threading.Event, **headers: str
) -> None:
    """Collect SSE events (as dicts with their SSE id) until ``stop`` is set."""
    try:
        _read(url, token, out, stop, headers)
    except httpx.HTTPError:
        if not stop.is_set():
            raise  # the server going away at the end of the run is not a failure


def _read(
    url: str, token: str, out: queue.Queue[Any], stop: threading.Event, headers: dict[str, str]
) -> None:
    with httpx.stream(
        "GET", url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=None
    ) as r:
        event: dict[str, Any] = {}
        for line in r.iter_lines():
            if stop.is_set():
                return
            if not line:
                if event.get("event") == "task":
                    out.put({**json.loads(event["data"]), "sse_id": int(event["id"])})
                elif event.get("event") == "ready":
                    out.put({"ready": True})
                event = {}
                continue
            key, _, value = line.partition(":")
            event[key] = value.lstrip()


def collect(q: queue.Queue[Any], until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(q.get(timeout=0.2))
        except queue.Empty:
            continue
        if until(got):
            return got
    raise AssertionError(f"stream gave {got}")


def states_of(events: list[dict[str, Any]], task_id: str) -> list[str]:
    return [e["state"] for e in events if e.get("id") == task_id]


def test_one_event_per_state_change_then_resume_with_last_event_id(
    api_url: str, tokens: Tokens, alice: httpx.Client, bob: httpx.Client
) -> None:
    q: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    url = f"{api_url}/api/tasks/stream?session_id=live"
    reader = threading.Thread(target=read_stream, args=(url, tokens.alice, q, stop), daemon=True)
    reader.start()
    collect(q, lambda got: got[-1].get("ready"))
    # when: a task runs in the watched session; bob's task in the same-named session and
    # alice's task elsewhere must not show
    bob.post("/api/tasks", json={"name": "t.noop", "session_id": "live"})
    alice.post("/api/tasks", json={"name": "t.noop", "session_id": "elsewhere"})
    task = alice.post("/api/tasks", json={"name": "t.add", "args": [1, 1], "session_id": "live"})
    tid = task.json()["id"]
    events = collect(q, lambda got: "completed" in states_of(got, tid))
    stop.set()
    # then: queued, running, completed, each once, with id, session, state and counts
    assert states_of(events, tid) == ["queued", "running", "completed"]
    assert {e["id"] for e in events if "id" in e} == {tid}
    last = events[-1]
    assert last["session_id"] == "live" and last["counts"]["completed"] >= 1
    ids = [e["sse_id"] for e in events if "sse_id" in e]
    assert ids == sorted(ids)
    # when: a client reconnects with the id of the first event
    q2: queue.Queue[Any] = queue.Queue()
    stop2 = threading.Event()
    again = threading.Thread(
        target=read_stream,
        args=(url, tokens.alice, q2, stop2),
        kwargs={"last-event-id": str(ids[0])},
        daemon=True,
    )
    again.start()
    replay = collect(q2, lambda got: got[-1].get("ready"))
    stop2.set()
    # then: it gets exactly what came after, from the database
    assert [e["sse_id"] for e in replay if "sse_id" in e] == ids[1:]


def test_health_readiness_and_metrics(anonymous: httpx.Client, alice: httpx.Client) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = anonymous.get("/readyz").json()
    assert ready == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "migrations": "ok"},
    }
    alice.post("/api/tasks?wait=30", json={"name": "t.add", "args": [1, 2], "session_id": "m"})
    alice.post("/api/tasks?wait=30", json={"name": "t.flaky", "args": [1], "session_id": "m"})
    held = alice.post("/api/tasks", json={"name": "t.noop", "countdown": 999}).json()
    alice.post(f"/api/tasks/{held['id']}/cancel")
    time.sleep(0.5)  # the event tail polls every 0.1 s
    text = anonymous.get("/metrics").text
    for line in [
        'taskledger_tasks{session="m",state="completed"} 2.0',
        'taskledger_tasks_enqueued_total{name="t.add"}',
        'taskledger_tasks_started_total{name="t.add"}',
        'taskledger_tasks_finished_total{name="t.add",state="completed"}',
        'taskledger_task_retries_total{name="t.flaky"}',
        'taskledger_task_cancels_total{name="t.noop"}',
        "taskledger_task_wait_seconds_bucket",
        "taskledger_task_run_seconds_bucket",
        'taskledger_queue_depth{queue="taskledger"}',
        "taskledger_circuit_breakers_open",
        'taskledger_sweep_last_duration_seconds{sweep="dispatch"}',
        'taskledger_sweep_runs{sweep="retry"}',
    ]:
        assert line in text, line
