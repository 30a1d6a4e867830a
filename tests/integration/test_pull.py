"""The pull API: take with a lease, heartbeat, complete, fail; fenced by attempt."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from jobs import pull
from jobs.enqueue import enqueue_many
from models import TaskState
from models.db import transaction
from tests.integration.safety_helpers import settings_env
from tests.support import ledger
from tests.support.services import Cluster
from workers.app import app

__all__ = ["settings_env"]

AGENTS_QUEUE = "agents"  # no Celery worker consumes it: only pullers take its tasks


@pytest.fixture()
def agents_queue(settings_env: pytest.MonkeyPatch) -> str:
    settings_env.setenv("TASKLEDGER_QUEUES", f"taskledger,{AGENTS_QUEUE}")
    return AGENTS_QUEUE


def _enqueue(n: int, *, name: str = "s.pay", session: str = "pull", **options: object) -> list:
    calls = [
        (name, [i], {}, {"queue": AGENTS_QUEUE, "session_id": session, **options}) for i in range(n)
    ]
    return enqueue_many(app, calls)


def test_eight_pullers_never_share_a_task(cluster: Cluster, clean: None, agents_queue: str) -> None:
    handles = _enqueue(200, session="many")
    got: dict[str, list[uuid.UUID]] = {}

    def puller(agent: str) -> None:
        mine = got.setdefault(agent, [])
        while True:
            attempt = pull.take(agent_id=agent, session_id="many")
            if attempt is None:
                return
            mine.append(attempt.id)
            pull.complete(app, attempt.id, agent_id=agent, attempt=attempt.attempt, result=agent)

    threads = [threading.Thread(target=puller, args=(f"agent-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    taken = [i for ids in got.values() for i in ids]
    assert len(taken) == len(set(taken)) == 200
    assert {str(i) for i in taken} == {h.id for h in handles}
    assert sum(1 for ids in got.values() if ids) >= 2  # really concurrent
    row = ledger.task(handles[0].id)
    assert row.state is TaskState.COMPLETED and row.result in got  # the agent's name


def test_protocol_and_a_stale_puller(cluster: Cluster, clean: None, agents_queue: str) -> None:
    _enqueue(1, session="one", max_retries=2)
    # the first agent takes it with a short lease, then goes silent
    first = pull.take(agent_id="slow", session_id="one", lease_s=1.0)
    assert first is not None and first.attempt == 1
    pull.heartbeat(first.id, agent_id="slow", attempt=1, lease_s=1.0)
    row = ledger.task(first.id)
    assert row.state is TaskState.RUNNING and row.worker_id == "slow"
    # its lease ends: the reaper fails the attempt (worker_lost) and it goes back to the queue
    ledger.wait_state(first.id, TaskState.QUEUED, TaskState.RETRY_WAIT, timeout=30)
    ledger.wait_state(first.id, TaskState.QUEUED, timeout=30)
    # a second agent takes the new attempt
    second = None
    deadline = time.monotonic() + 30
    while second is None and time.monotonic() < deadline:
        second = pull.take(agent_id="fast", session_id="one")
        time.sleep(0.05)
    assert second is not None and second.id == first.id and second.attempt == 2
    # the stale puller can neither heartbeat, complete nor fail the newer attempt
    with pytest.raises(pull.StaleAttempt):
        pull.heartbeat(first.id, agent_id="slow", attempt=1)
    with pytest.raises(pull.StaleAttempt):
        pull.complete(app, first.id, agent_id="slow", attempt=1, result="stale")
    with pytest.raises(pull.StaleAttempt):
        pull.fail(app, first.id, agent_id="slow", attempt=1, error="stale")
    # failing follows the retry rules; then completing the next attempt wins
    assert (
        pull.fail(app, first.id, agent_id="fast", attempt=2, error="flaky") is TaskState.RETRY_WAIT
    )
    ledger.wait_state(first.id, TaskState.QUEUED, timeout=30)
    third = None
    while third is None:
        third = pull.take(agent_id="fast", session_id="one")
    pull.complete(app, first.id, agent_id="fast", attempt=third.attempt, result={"ok": True})
    row = ledger.task(first.id)
    assert row.state is TaskState.COMPLETED and row.result == {"ok": True} and row.attempts == 3
    # stats show each agent's last pull
    with transaction() as conn:
        agents = {a["agent_id"]: a for a in pull.agents(conn)}
    assert set(agents) >= {"slow", "fast"}
    assert agents["fast"]["last_pull_at"] > agents["slow"]["last_pull_at"]
