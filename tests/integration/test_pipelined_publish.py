"""The enqueue path's pipelined publish (``jobs.pipelined``): every message is what Celery's
own ``send_task`` publishes (``jobs.dispatch.publish``), all of a batch goes out in one
round trip, and a plain worker runs each task of a mixed batch exactly once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from jobs import pipelined
from jobs.dispatch import Dispatch, publish
from models import Task, TaskEvent, TaskState
from models.db import transaction
from tests.support import ledger, services, tasks
from tests.support.services import Cluster, wait_for
from workers.app import app

assert tasks  # registers t.add and t.noop in this process too

QUEUES = ("tl-test-pipelined-a", "tl-test-pipelined-b")  # nobody consumes them
ARGS: list[tuple[list[Any], dict[str, Any]]] = [
    ([], {}),  # the kind's first message: Celery builds it, the others come from it
    ([], {}),
    ([1, 2.5, None, True], {"x": "é", "nested": {"list": [1, [2, {"k": None}]]}}),
    (["a" * 2000], {}),  # longer than Celery's argsrepr limit
]


@pytest.fixture()
def broker() -> Iterator[Any]:
    client = services.broker_redis()
    yield client
    for queue in QUEUES:
        client.delete(*client.keys(f"{queue}*") or ["-"])


def dispatches() -> list[Dispatch]:
    return [
        Dispatch(
            id=uuid.uuid4(),
            name=name,
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            timeout_s=timeout,
            behind=behind,
        )
        for name in ("t.add", "t.noop")
        for queue in QUEUES
        for priority in (1, 3, 5)
        for timeout in (30.0, 7.5)
        for args, kwargs in ARGS
        for behind in (False, True)  # a session's extra message: half a step behind
    ]


def lists(batch: list[Dispatch]) -> int:
    """kombu's Redis lists the batch goes to: one per queue and broker priority."""
    return len({(d.queue, d.broker_priority) for d in batch})


def messages(client: Any) -> dict[str, list[dict[str, Any]]]:
    """Each list key's messages in consuming order (BRPOP takes from the right)."""
    keys = sorted(k.decode() for q in QUEUES for k in client.keys(f"{q}*"))
    return {k: [json.loads(raw) for raw in reversed(client.lrange(k, 0, -1))] for k in keys}


def test_messages_are_exactly_what_celery_send_task_publishes(broker: Any) -> None:
    batch = dispatches()
    assert publish(app, batch, grace_s=5.0) == len(batch)  # Celery's send_task, one by one
    celery = messages(broker)
    for key in celery:
        broker.delete(key)

    assert pipelined.publish_pipelined(app, batch, grace_s=5.0) == len(batch)
    ours = messages(broker)

    assert list(ours) == list(celery) and len(celery) == lists(batch)
    tags = set()
    for key, theirs in celery.items():
        assert len(ours[key]) == len(theirs)
        for mine, celerys in zip(ours[key], theirs, strict=True):
            tags.add(mine["properties"].pop("delivery_tag"))
            celerys["properties"].pop("delivery_tag")
            assert mine == celerys
    assert len(tags) == len(batch)  # each message its own delivery tag, as kombu gives


class RoundTrips:
    """A Redis client that counts its round trips and the commands each carried."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.trips: list[int] = []

    def lpush(self, *args: Any) -> Any:
        self.trips.append(1)
        return self.client.lpush(*args)

    def pipeline(self, **options: Any) -> Any:
        pipe = self.client.pipeline(**options)
        execute = pipe.execute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.trips.append(len(pipe.command_stack))
            return execute(*args, **kwargs)

        pipe.execute = counted
        return pipe


def test_a_batch_is_one_round_trip(broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = dispatches()
    spies: list[RoundTrips] = []
    real = pipelined._push

    def push(client: Any, pushes: dict[str, list[str]]) -> None:
        spies.append(RoundTrips(client))
        real(spies[-1], pushes)

    monkeypatch.setattr(pipelined, "_push", push)
    assert pipelined.publish_pipelined(app, batch, grace_s=5.0) == len(batch)

    # One pipeline, one LPUSH per list (queue and priority) carrying all its messages.
    assert [spy.trips for spy in spies] == [[lists(batch)]]
    assert sum(len(v) for v in messages(broker).values()) == len(batch)


def test_a_failed_pipeline_falls_back_to_one_by_one(
    broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(client: Any, pushes: dict[str, list[str]]) -> None:
        raise ConnectionError("broker went away")

    monkeypatch.setattr(pipelined, "_push", down)
    batch = dispatches()[:6]
    assert pipelined.publish_pipelined(app, batch, grace_s=5.0) == len(batch)
    sent = [m["headers"]["id"] for ms in messages(broker).values() for m in ms]
    assert sorted(sent) == sorted(str(d.id) for d in batch)


@pytest.mark.usefixtures("clean")
def test_a_mixed_batch_runs_each_task_exactly_once(cluster: Cluster, counter: Any) -> None:
    from jobs import enqueue_many

    queues = ("taskledger", "pull-only")  # both declared; one extra worker takes pull-only
    extra = cluster.start_worker("-Q", "pull-only")
    try:
        calls: list[tuple[str, Any, Any, Any]] = [
            ("t.add", (i, 1), {}, {"priority": 1 + i % 5, "queue": queues[i % 2]})
            for i in range(500)
        ]
        ids = [uuid.UUID(str(h.id)) for h in enqueue_many(app, calls)]
        wait_for(
            lambda: ledger.count(Task.id.in_(ids), Task.state == TaskState.COMPLETED) == 500,
            180,
            "the batch to complete",
        )
    finally:
        cluster.workers.remove(extra)
        extra.stop()

    with transaction() as conn:
        columns = (Task.id, Task.result, Task.attempts, Task.queue, Task.priority)
        rows = {r.id: r for r in conn.execute(select(*columns).where(Task.id.in_(ids)))}
    started = ledger.count_events(
        TaskEvent.task_id.in_(ids), TaskEvent.event_type == "task_started"
    )
    assert started == 500
    assert all(n == 1 for n in ledger.completed_events_per_task().values())
    for i, task_id in enumerate(ids):
        row = rows[task_id]
        assert (row.result, row.attempts, row.queue, row.priority) == (
            i + 1,
            1,
            queues[i % 2],
            1 + i % 5,
        )
        assert int(counter.get(f"runs:{task_id}")) == 1
