"""The dispatch window: which queued rows get a Celery message, and publishing it.

Only work that may run soon is published (invariant 6). A task without a
session is published as soon as it is due. A task in a session waits in
Postgres until the session has fewer than its window (default 3) of tasks in
flight, where "in flight" means running, or queued with a message out.
The next one is chosen by priority, then age, so one agent's backlog of
thousands never stands in Redis in front of another agent's work.

A window is usually wider than the pool that serves it (3 per session, 2 processes
a worker here), so a busy session also keeps messages waiting in Redis. Those go
half a step behind their priority (``Dispatch.behind``): a session's first task in
flight is taken before any other session's extra ones, so a newcomer waits for the
first free process, not behind the backlog's waiting messages.

Setting ``dispatched_at`` is not a state change: the row stays ``queued``
until a worker claims it. A row whose message was lost keeps its
``dispatched_at`` and the dispatch sweep publishes it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from jobs import holds
from jobs.transitions import write_events
from models import MAX_PRIORITY, AgentSession, Task, TaskState
from models.db import transaction

log = logging.getLogger(__name__)

MAX_BROKER_PRIORITY = 9  # kombu's Redis transport: levels 0-9
# fill_window first takes this many more candidates than it has room for, in order and
# without the holds or row locks, then applies those to the few; see ``_next_in_session``.
CANDIDATE_MARGIN = 16

PUBLISH_COLUMNS = (
    Task.id,
    Task.name,
    Task.args,
    Task.kwargs,
    Task.queue,
    Task.priority,
    Task.timeout_s,
    Task.goal_id,
)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One message to publish, after the transaction that reserved it has committed."""

    id: uuid.UUID
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    timeout_s: float
    # Published while its session already had work in flight: waits behind other
    # sessions' first tasks of the same priority (see the module's docstring).
    behind: bool = False

    @classmethod
    def from_row(cls, row: Row[Any], *, behind: bool = False) -> Dispatch:
        return cls(
            id=row.id,
            name=row.name,
            args=row.args,
            kwargs=row.kwargs,
            queue=row.queue,
            priority=row.priority,
            timeout_s=row.timeout_s,
            behind=behind,
        )

    @property
    def broker_priority(self) -> int:
        return broker_priority(self.priority, behind=self.behind)


def broker_priority(priority: int, *, behind: bool = False) -> int:
    """Our 5 (most urgent) is Redis's 1, our 1 is 9. Redis takes 0 first, and 0 is kept
    for the sweeps (``beat.schedule``) so they never wait behind work. A message
    ``behind`` takes the even level after its priority's (5 -> 2, 3 -> 6); Redis has
    no level after 9, so at priority 1 it stays at 9 (no split there)."""
    level = (MAX_PRIORITY - priority) * 2 + 1
    return min(level + 1, MAX_BROKER_PRIORITY) if behind else level


def publish(app: Any, dispatches: Iterable[Dispatch], *, grace_s: float) -> int:
    """Send one message per dispatch; return how many went out. Never raises.

    A broker outage stops the batch and un-marks what was not sent, so the ledger never
    says a message is out when it is not; the dispatch sweep publishes those rows again.
    A message the broker cannot take for reasons of its own (a corrupt row) is
    quarantined and the rest go on (invariant 10).
    """
    dispatches = list(dispatches)
    if not dispatches:
        return 0
    sent = 0
    try:
        with app.producer_or_acquire() as producer:  # one connection for the whole batch
            broker_errors = _broker_errors(producer)
            for d in dispatches:
                try:
                    _send(app, producer, d, grace_s)
                except broker_errors:
                    raise
                except Exception as exc:
                    from jobs.quarantine import quarantine_quietly  # quarantine needs us

                    quarantine_quietly(d.id, stage="publish", error=exc)
                sent += 1
    except Exception as exc:
        unsent = dispatches[sent:]
        log.warning(
            "broker unavailable (%s); %d message(s) left to the dispatch sweep",
            exc.__class__.__name__,
            len(unsent),
        )
        _unmark_quietly(unsent)
    return sent


def _broker_errors(producer: Any) -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError

    conn = producer.connection
    return (
        OperationalError,
        ConnectionError,
        TimeoutError,
        *getattr(conn, "connection_errors", ()),
        *getattr(conn, "channel_errors", ()),
    )


def _unmark_quietly(unsent: Sequence[Dispatch]) -> None:
    """These messages did not go out: say so, so the next dispatch sweep sends them."""
    if not unsent:
        return
    try:
        with transaction() as conn:
            conn.execute(
                update(Task)
                .where(Task.id.in_([d.id for d in unsent]), Task.state == TaskState.QUEUED)
                .values(dispatched_at=None)
            )
    except Exception:
        # Postgres is out too: the redispatch of unclaimed rows finds them later.
        log.warning("could not un-mark %d unsent message(s)", len(unsent), exc_info=True)


def _send(app: Any, producer: Any, d: Dispatch, grace_s: float) -> None:
    app.send_task(
        d.name,
        args=d.args,
        kwargs=d.kwargs,
        task_id=str(d.id),
        queue=d.queue,
        priority=d.broker_priority,
        soft_time_limit=d.timeout_s,
        time_limit=d.timeout_s + grace_s,
        producer=producer,
        taskledger_internal=True,  # the row exists: workers.app sends it as is (no re-enqueue)
    )


def in_flight(conn: Connection, session_id: str) -> int:
    """Running, published, or cancelled while its code has not yet stopped (the attempt
    keeps its lease until the process running it is gone: ``jobs.cancel``)."""
    return int(conn.execute(_in_flight_count(session_id)).scalar_one())


def _in_flight_count(session_id: str) -> Any:
    return select(func.count()).where(
        Task.session_id == session_id,
        or_(
            Task.state == TaskState.RUNNING,
            (Task.state == TaskState.QUEUED) & Task.dispatched_at.is_not(None),
            (Task.state == TaskState.CANCELLED) & Task.lease_expires_at.is_not(None),
        ),
    )


def window_size(conn: Connection, session_id: str, default: int) -> int:
    size = conn.execute(
        select(AgentSession.concurrency).where(AgentSession.id == session_id)
    ).scalar_one_or_none()
    return size or default


DISPATCH_ORDER = (Task.priority.desc(), Task.created_at, Task.id)


def _due_in_session(session_id: str, now: datetime) -> list[Any]:
    """``_due_undispatched`` without the holds (see ``_next_in_session``)."""
    return [
        Task.session_id == session_id,
        Task.state == TaskState.QUEUED,
        Task.dispatched_at.is_(None),
        Task.scheduled_for <= now,
    ]


def _due_undispatched(now: datetime) -> list[Any]:
    return [
        Task.state == TaskState.QUEUED,
        Task.dispatched_at.is_(None),
        Task.scheduled_for <= now,
        *holds.runnable(now),  # paused session or queue, open circuit breaker
    ]


def lock_ids(conn: Connection, ids_query: Any) -> list[uuid.UUID]:
    """Run a ``SELECT id … LIMIT n FOR UPDATE SKIP LOCKED`` on its own, then act on those ids.

    Inlined as ``UPDATE … WHERE id IN (subquery)``, Postgres may evaluate the
    limited subquery more than once and touch more than n rows (seen here: a
    window of 3 let 6 through).
    """
    return list(conn.execute(ids_query).scalars())


def _reserve(conn: Connection, ids_query: Any, now: datetime) -> list[Dispatch]:
    return [Dispatch.from_row(row) for row in _mark_dispatched(conn, ids_query, now)]


def _mark_dispatched(conn: Connection, ids_query: Any, now: datetime) -> list[Row[Any]]:
    """Lock the chosen rows, stamp them as published, return what the messages need."""
    return _mark_ids(conn, lock_ids(conn, ids_query), now)


def _mark_ids(conn: Connection, ids: list[uuid.UUID], now: datetime) -> list[Row[Any]]:
    if not ids:
        return []
    stmt = (
        update(Task)
        .where(Task.id.in_(ids), Task.state == TaskState.QUEUED)
        .values(dispatched_at=now, dispatch_count=Task.dispatch_count + 1)
        .returning(*PUBLISH_COLUMNS, Task.dispatch_count)
    )
    return list(conn.execute(stmt))


def fill_window(conn: Connection, session_id: str, now: datetime, default: int) -> list[Dispatch]:
    """Reserve as many of the session's due tasks as its window has room for.

    Only the session's first task in flight goes at its own priority; the others are
    published ``behind`` (the window still caps how many there are)."""
    # Serialise window decisions per session: two finishing workers must not both see room.
    # Each statement is a round trip, which on a busy machine costs a wake-up of the
    # Postgres backend: the lock comes with the window size, the count with the candidates.
    lock = func.pg_advisory_xact_lock(func.hashtext("tl-window:" + session_id))
    size_of = select(AgentSession.concurrency).where(AgentSession.id == session_id)
    size = conn.execute(select(lock, size_of.scalar_subquery())).one()[1] or default
    limit = size + CANDIDATE_MARGIN
    due = (
        select(Task.id, Task.priority, Task.created_at)
        .where(*_due_in_session(session_id, now))
        .order_by(*DISPATCH_ORDER)
        .limit(limit)
        .subquery()
    )
    in_order = aggregate_order_by(due.c.id, due.c.priority.desc(), due.c.created_at, due.c.id)
    flying, candidates = conn.execute(
        select(
            _in_flight_count(session_id).scalar_subquery(),
            select(func.array_agg(in_order)).select_from(due).scalar_subquery(),
        )
    ).one()
    room = size - flying
    if room <= 0:
        return []
    ids = _next_in_session(conn, session_id, now, room, candidates or [], limit)
    if not ids:
        return []
    rows = {row.id: row for row in _mark_ids(conn, ids, now)}
    ordered = [rows[i] for i in ids if i in rows]  # the session's order: first is its head
    return [Dispatch.from_row(row, behind=flying + n > 0) for n, row in enumerate(ordered)]


def _next_in_session(
    conn: Connection,
    session_id: str,
    now: datetime,
    room: int,
    candidates: list[uuid.UUID],
    limit: int,
) -> list[uuid.UUID]:
    """The session's next ``room`` due, unheld rows, locked, in dispatch order.

    With the holds' anti-joins and the row lock in one query, Postgres checks and sorts
    the session's whole backlog on every call (25 ms for 5,000 queued here, paid by each
    completion); the plain ordered top-N over the same rows (``candidates``, at most
    ``limit``) takes 1 ms. So the holds and locks are applied to those few only, and the
    full query runs only when they were all held or taken (rare: a paused queue, an open
    breaker)."""
    if not candidates:
        return []
    # Ordered by the list, not by the columns: sorting on (priority, created_at) led the
    # planner (fresh statistics say one queued row) to walk the whole queued index (4,780
    # rows, 2 ms) instead of looking up the few ids.
    listed = (
        func.unnest(cast(candidates, ARRAY(PG_UUID(as_uuid=True))))
        .table_valued("id", with_ordinality="n")
        .render_derived()
    )
    ids = lock_ids(
        conn,
        select(Task.id)
        .select_from(listed.join(Task, Task.id == listed.c.id))
        .where(Task.session_id == session_id, *_due_undispatched(now))
        .order_by(listed.c.n)
        .limit(room)
        .with_for_update(of=Task, skip_locked=True),
    )
    full = select(Task.id).where(Task.session_id == session_id, *_due_undispatched(now))
    if len(ids) == room or len(candidates) < limit:  # enough, or that was all there is
        return ids
    return lock_ids(
        conn, full.order_by(*DISPATCH_ORDER).limit(room).with_for_update(skip_locked=True)
    )


def release(
    conn: Connection,
    *,
    sessions: Iterable[str | None],
    now: datetime,
    default_window: int,
    sessionless_ids: Sequence[uuid.UUID] = (),
) -> list[Dispatch]:
    """After a change that may free a slot or make work due: reserve what may go now."""
    out: list[Dispatch] = []
    for session_id in sorted({s for s in sessions if s is not None}):
        out.extend(fill_window(conn, session_id, now, default_window))
    if sessionless_ids:
        ids = select(Task.id).where(
            Task.id.in_(list(sessionless_ids)),
            Task.session_id.is_(None),
            *_due_undispatched(now),
        )
        out.extend(_reserve(conn, ids, now))
    return out


def release_rows(
    conn: Connection, rows: Iterable[Row[Any]], *, now: datetime, default_window: int
) -> list[Dispatch]:
    """``release`` for rows that just became queued (or freed a slot): their sessions'
    windows, and the sessionless ones themselves."""
    rows = list(rows)
    return release(
        conn,
        sessions={r.session_id for r in rows},
        sessionless_ids=[r.id for r in rows if r.session_id is None],
        now=now,
        default_window=default_window,
    )


def reserve_due(
    conn: Connection, now: datetime, *, batch: int, default_window: int
) -> list[Dispatch]:
    """The dispatch sweep's first half: due rows that never had a message."""
    sessionless = (
        select(Task.id)
        .where(Task.session_id.is_(None), *_due_undispatched(now))
        .order_by(Task.priority.desc(), Task.created_at, Task.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    out = _reserve(conn, sessionless, now)
    sessions = conn.execute(
        select(Task.session_id)
        .where(Task.session_id.is_not(None), *_due_undispatched(now))
        .distinct()
    ).scalars()
    for session_id in [s for s in sessions if s is not None]:
        out.extend(fill_window(conn, session_id, now, default_window))
    return out


def reserve_lost(
    conn: Connection,
    now: datetime,
    *,
    older_than_s: float,
    batch: int,
    waiting_in: Callable[[list[str]], Mapping[str, int]] | None = None,
    present_in: Callable[[str], set[uuid.UUID] | None] | None = None,
) -> list[Dispatch]:
    """The sweep's second half: queued rows whose message went out long ago and was never claimed.

    The message may have been lost (a crash between commit and publish, a failed send).
    Publishing again is safe: the claim lets one through. Where the broker can say how many
    messages wait in a queue (``waiting_in``), nothing is republished unless that queue is
    short; then, where it can also say which task ids wait (``present_in``), exactly the
    stale rows with no message are republished, whichever messages went missing. A long
    backlog that is simply waiting its turn is never republished.
    """
    cutoff = now - timedelta(seconds=older_than_s)
    stale = [Task.state == TaskState.QUEUED, Task.dispatched_at < cutoff]
    if waiting_in is None:
        ids = select(Task.id).where(*stale).order_by(Task.dispatched_at).limit(batch)
        return _redispatch(conn, ids.with_for_update(skip_locked=True), now, reason="unclaimed")
    queues = list(conn.execute(select(Task.queue).where(*stale).distinct()).scalars())
    if not queues:
        return []
    out_per_queue = dict(
        conn.execute(
            select(Task.queue, func.count())
            .where(
                Task.state == TaskState.QUEUED,
                Task.dispatched_at.is_not(None),
                Task.queue.in_(queues),
            )
            .group_by(Task.queue)
        ).all()
    )
    waiting = waiting_in(queues)
    out: list[Dispatch] = []
    for queue in queues:
        missing = min(int(out_per_queue.get(queue, 0)) - int(waiting.get(queue, 0)), batch)
        if missing <= 0:
            continue
        present = present_in(queue) if present_in is not None else None
        ids = select(Task.id).where(*stale, Task.queue == queue)
        if present is not None:
            stale_ids = list(conn.execute(ids.order_by(Task.dispatched_at)).scalars())
            lost = [i for i in stale_ids if i not in present][:batch]
            if not lost:
                continue
            ids = select(Task.id).where(*stale, Task.id.in_(lost))
        else:
            ids = ids.order_by(Task.dispatched_at).limit(missing)
        out += _redispatch(
            conn, ids.with_for_update(skip_locked=True), now, reason="message_missing"
        )
    return out


def reserve_after_broker_reset(
    conn: Connection, now: datetime, *, batch: int, after: uuid.UUID | None
) -> list[Dispatch]:
    """Every queued row with a message out: the broker has forgotten them all."""
    where = [Task.state == TaskState.QUEUED, Task.dispatched_at.is_not(None)]
    if after is not None:
        where.append(Task.id > after)
    ids = (
        select(Task.id)
        .where(*where)
        .order_by(Task.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return _redispatch(conn, ids, now, reason="broker_reset")


def _redispatch(conn: Connection, ids_query: Any, now: datetime, *, reason: str) -> list[Dispatch]:
    rows = _mark_dispatched(conn, ids_query, now)
    write_events(
        conn,
        rows,
        lambda row: [
            ("task_redispatched", {"reason": reason, "dispatch_count": row.dispatch_count})
        ],
        now,
    )
    return sorted((Dispatch.from_row(row) for row in rows), key=lambda d: d.id)
