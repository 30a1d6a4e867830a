"""Circuit breaker: consecutive failures open it, a trial after the cool-down half-opens it,
a successful trial closes it; each change is an event; stats show open breakers."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from cli import ledger as ledger_cli
from jobs import breaker, queries
from jobs.enqueue import enqueue
from models import TaskState, utcnow
from models.db import transaction
from tests.support import ledger
from tests.support.services import Cluster, wait_for
from workers.app import app

# s.fragile: breaker_threshold=3, breaker_cooldown=2.0, max_retries=0 (tests/support/safety_tasks)


def _runs(counter) -> list[tuple[str, float]]:
    out = []
    for raw in counter.lrange("fragile:runs", 0, -1):
        label, at = raw.decode().rsplit(":", 1)
        out.append((label, float(at)))
    return out


def _events(kind: str) -> list[dict]:
    with transaction() as conn:
        return [dict(e.payload) for e in reversed(queries.events_by_type(conn, kind))]


def _state() -> str:
    with transaction() as conn:
        return breaker.breaker_state(conn, "s.fragile")


def test_open_half_open_close(cluster: Cluster, clean: None, counter, capsys) -> None:
    counter.set("fragile:down", 1)
    # given: three consecutive failures
    for i in range(3):
        h = enqueue(app, "s.fragile", [f"f{i}"])
        ledger.wait_state(h.id, TaskState.FAILED)
    # then: the breaker is open, and stats show it
    assert _state() == "open"
    opened = _events("breaker_opened")
    assert opened[0]["consecutive_failures"] == 3 and opened[0]["reason"] == "threshold reached"
    with transaction() as conn:
        assert [b["name"] for b in breaker.open_breakers(conn)] == ["s.fragile"]
    capsys.readouterr()
    ledger_cli.stats(session=None, as_json=True)  # `taskledger stats --json`, in-process: fast
    shown = json.loads(capsys.readouterr().out)["open_breakers"]
    assert [(b["name"], b["state"]) for b in shown] == [("s.fragile", "open")]
    opened_at = time.time()
    # when: new work arrives during the cool-down, it waits
    waiting = [enqueue(app, "s.fragile", [f"w{i}"]) for i in range(2)]
    time.sleep(1.0)
    assert [label for label, _ in _runs(counter)] == ["f0", "f1", "f2"]
    assert {ledger.task(h.id).state for h in waiting} == {TaskState.QUEUED}
    # then: after the cool-down one trial runs (half-open); it fails: open again
    wait_for(lambda: len(_events("breaker_opened")) == 2, 30, "the failed trial to reopen it")
    trial_runs = _runs(counter)[3:]
    assert len(trial_runs) == 1 and trial_runs[0][1] >= opened_at + 1.5
    assert _events("breaker_half_open")[0]["name"] == "s.fragile"
    assert _events("breaker_opened")[1]["reason"] == "trial failed"
    # when: the downstream recovers, the next trial succeeds and closes it
    counter.delete("fragile:down")
    wait_for(lambda: _events("breaker_closed"), 30, "a successful trial to close it")
    assert _events("breaker_closed")[0]["was"] == "half_open"
    for h in waiting:
        ledger.wait_state(h.id, TaskState.COMPLETED, TaskState.FAILED)
    assert _state() == "closed"
    assert len(_events("breaker_half_open")) == 2
    with transaction() as conn:
        assert breaker.open_breakers(conn) == []


def test_cool_down_runs_on_the_database_clock(cluster: Cluster, clean: None, counter) -> None:
    # given: the breaker opened by a worker whose clock is an hour ahead of the database's
    # (the claim's gate read the worker's clock and the dispatch sweep the database's: a
    # skew held every trial back by as much)
    skewed = utcnow() + timedelta(hours=1)
    config = breaker.BreakerConfig(threshold=3, cooldown_s=2.0)  # s.fragile's
    with transaction() as conn:
        for _ in range(3):
            breaker.record_failure(conn, "s.fragile", task_id=None, now=skewed, config=config)
    opened_at = time.time()
    assert _state() == "open"
    # when: work arrives during the cool-down
    h = enqueue(app, "s.fragile", ["after"])
    # then: it runs as the trial once the 2 s are over, and its success closes the breaker
    ledger.wait_state(h.id, TaskState.COMPLETED, timeout=20)
    runs = _runs(counter)
    assert [label for label, _ in runs] == ["after"] and runs[0][1] >= opened_at + 1.5
    assert [e["name"] for e in _events("breaker_half_open")] == ["s.fragile"]
    assert _events("breaker_closed")[0]["was"] == "half_open"
    assert _state() == "closed"
