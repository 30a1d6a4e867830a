"""The ledger's event log, tailed once per API process and fanned out to SSE streams.

One poller reads ``task_events`` by its bigint id (the SSE event id), so a
reconnecting monitor resumes exactly where it left off with ``Last-Event-ID``.
Ids come from a sequence and are handed out before commit, so a slow
transaction can commit id 41 after 42 was read; the poller keeps such gaps
open for a few seconds and picks late rows up, so no state change is missed.
The same tail feeds the Prometheus counters (api/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, or_, select

from jobs import listing
from models import Task, TaskEvent
from models.db import transaction

log = logging.getLogger("taskledger.api.feed")

POLL_S = 0.1  # seconds between polls: the floor of SSE latency
BATCH = 2000
MAX_GAPS = 10_000
GAP_HOLD_S = 5.0  # an id skipped this long was a rolled-back transaction, not a slow one

# The state each event moves its task to; None: not a state change.
EVENT_STATE: dict[str, str | None] = {
    "task_started": "running",
    "task_completed": "completed",
    "task_failed": None,  # followed by task_scheduled_for_retry or task_exhausted_retries
    "task_scheduled_for_retry": "retry_wait",
    "task_exhausted_retries": "failed",
    "task_cancelled": "cancelled",
    "task_requeued": "queued",
    "task_retry_due": "queued",
    "task_unblocked": "queued",
    "task_redispatched": None,
    "policy_decision": None,  # a record of the admission, written beside task_created
    "task_stopped": None,
    "task_terminated": None,
    "task_updated": None,
    "task_approved": "queued",
    "task_denied": "cancelled",
    "task_skipped": "skipped",
    "task_quarantined": "failed",
    "task_held": "blocked",
}


@dataclass(frozen=True)
class FeedEvent:
    event_id: int
    event_type: str
    task_id: str
    session_id: str | None
    user_id: str | None
    goal_id: str | None
    name: str
    state: str
    at: datetime
    scheduled_for: datetime | None
    started_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event": self.event_type,
            "id": self.task_id,
            "task_id": self.task_id,
            "session_id": self.session_id,
            "goal_id": self.goal_id,
            "name": self.name,
            "state": self.state,
            "at": self.at.isoformat(),
            "counts": self.counts,
        }


def state_of(event_type: str, payload: dict[str, Any], current: str) -> str | None:
    if event_type in EVENT_STATE:
        return EVENT_STATE[event_type]
    if event_type == "task_created":
        return str(payload.get("state") or current)
    # Anything else (policy_decision, task_stopped, task_updated…) annotates a task
    # without moving it, unless it says which state it moved to.
    state = payload.get("state") or payload.get("to")
    return None if state is None else str(state)


def read_events(
    conn: Connection,
    where: Sequence[ColumnElement[bool]],
    *,
    limit: int = BATCH,
    with_counts: bool = True,
    counts_user: str | None = None,
) -> list[FeedEvent]:
    """Task events (joined with their task) matching ``where``, by id, as FeedEvents."""
    stmt = (
        select(
            TaskEvent.id,
            TaskEvent.event_type,
            TaskEvent.payload,
            TaskEvent.created_at,
            Task.id.label("task_id"),
            Task.session_id,
            Task.__table__.c.user_id,
            Task.goal_id,
            Task.name,
            Task.state,
            Task.scheduled_for,
            Task.started_at,
        )
        .join(Task, Task.id == TaskEvent.task_id)
        .where(*where)
        .order_by(TaskEvent.id)
        .limit(limit)
    )
    out = []
    for r in conn.execute(stmt):
        state = state_of(r.event_type, dict(r.payload or {}), str(r.state))
        if state is None:
            continue
        out.append(
            FeedEvent(
                event_id=int(r.id),
                event_type=r.event_type,
                task_id=str(r.task_id),
                session_id=r.session_id,
                user_id=r.user_id,
                goal_id=None if r.goal_id is None else str(r.goal_id),
                name=r.name,
                state=state,
                at=r.created_at,
                scheduled_for=r.scheduled_for,
                started_at=r.started_at,
            )
        )
    if with_counts and out:
        sessions = {e.session_id for e in out if e.session_id is not None}
        counts = listing.session_counts(conn, sessions, user_id=counts_user)
        for e in out:
            if e.session_id is not None:
                e.counts.update(counts.get(e.session_id, {}))
    return out


class Subscriber:
    """One SSE stream: a bounded queue; a stream that falls too far behind is closed and
    reconnects with Last-Event-ID (the browser's EventSource does that by itself)."""

    def __init__(self, accept: Callable[[FeedEvent], bool], size: int = 20_000) -> None:
        self.accept = accept
        self.queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(size)
        self.overflowed = False

    def offer(self, event: FeedEvent) -> None:
        if self.overflowed or not self.accept(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # tells the stream to end


class EventFeed:
    def __init__(self, poll_s: float = POLL_S) -> None:
        self.poll_s = poll_s
        self.high = 0  # highest event id seen
        self.gaps: dict[int, float] = {}  # ids below high not seen yet -> when first missed
        self.subscribers: set[Subscriber] = set()
        self.listeners: list[Callable[[FeedEvent], None]] = []
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    def subscribe(self, accept: Callable[[FeedEvent], bool]) -> Subscriber:
        sub = Subscriber(accept)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def start(self) -> None:
        self.high = await asyncio.to_thread(self._max_id)
        self.task = asyncio.create_task(self._run(), name="taskledger-event-feed")
        self.started.set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def _max_id(self) -> int:
        with transaction() as conn:
            return int(conn.execute(select(func.coalesce(func.max(TaskEvent.id), 0))).scalar_one())

    async def _run(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self.poll)
                for event in events:
                    for listener in self.listeners:
                        listener(event)
                    for sub in list(self.subscribers):
                        sub.offer(event)
                if len(events) >= BATCH:
                    continue  # a burst (a cancelled backlog): read on without sleeping
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading the event log failed; retrying", exc_info=True)
            await asyncio.sleep(self.poll_s)

    def poll(self) -> list[FeedEvent]:
        now = time.monotonic()
        for gap, since in list(self.gaps.items()):
            if now - since > GAP_HOLD_S:
                del self.gaps[gap]
        condition = TaskEvent.id > self.high
        if self.gaps:
            condition = or_(condition, TaskEvent.id.in_(sorted(self.gaps)))
        with transaction() as conn:
            raw_ids = [
                int(i)
                for i in conn.execute(
                    select(TaskEvent.id).where(condition).order_by(TaskEvent.id).limit(BATCH)
                ).scalars()
            ]
            if not raw_ids:
                return []
            events = read_events(conn, [TaskEvent.id.in_(raw_ids)], limit=BATCH)
        for i in raw_ids:
            self.gaps.pop(i, None)
        top = max(raw_ids)
        if top > self.high:
            seen = set(raw_ids)
            missing = [i for i in range(self.high + 1, top) if i not in seen]
            if len(self.gaps) + len(missing) <= MAX_GAPS:  # else a jump of the sequence
                for i in missing:
                    self.gaps.setdefault(i, now)
            self.high = top
        return events
