"""Waiting for a task to finish (seed 002's sync mode), woken by Postgres, not a tight poll.

``jobs/transitions.py`` sends ``NOTIFY taskledger_final, '<task id>'`` in the same
transaction that moves a task to a final state (a bulk move sends ``'*'``: "look
again"), so the notification arrives exactly when the new state is visible. Each
process runs one listener thread on its own connection; a waiter registers its task
id, checks the row, then sleeps until woken or until the slow fallback poll
(``TASKLEDGER_WAIT_POLL_SECONDS``, for a lost connection or a missed notification).

A timeout raises ``TaskTimeout`` and leaves the task running.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, select, text

from jobs import errors
from models import Task
from models.db import transaction
from models.settings import get_settings
from models.states import FINAL_TASK_STATES

log = logging.getLogger(__name__)

CHANNEL = "taskledger_final"
BULK_NOTIFY_OVER = 50  # more finished rows than this in one move: one "*" notification


def notify_final(conn: Connection, task_ids: Sequence[uuid.UUID]) -> None:
    """Called in the transaction that made these tasks final (delivered on commit)."""
    if not task_ids:
        return
    if len(task_ids) > BULK_NOTIFY_OVER:
        conn.execute(text("SELECT pg_notify(:c, '*')"), {"c": CHANNEL})
        return
    conn.execute(
        text("SELECT pg_notify(:c, x) FROM unnest(CAST(:ids AS text[])) AS x"),
        {"c": CHANNEL, "ids": [str(i) for i in task_ids]},
    )


class _Listener:
    """One LISTEN connection per process; wakes the waiters of the tasks it hears about."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.waiters: dict[uuid.UUID, set[threading.Event]] = {}
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, name="taskledger-wait", daemon=True)
        self.thread.start()

    def register(self, task_id: uuid.UUID) -> threading.Event:
        event = threading.Event()
        with self.lock:
            self.waiters.setdefault(task_id, set()).add(event)
        return event

    def unregister(self, task_id: uuid.UUID, event: threading.Event) -> None:
        with self.lock:
            events = self.waiters.get(task_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self.waiters[task_id]

    def _wake(self, payload: str) -> None:
        with self.lock:
            if payload == "*":
                targets = [e for events in self.waiters.values() for e in events]
            else:
                try:
                    targets = list(self.waiters.get(uuid.UUID(payload), ()))
                except ValueError:
                    return
        for event in targets:
            event.set()

    def _run(self) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                url = get_settings().resolved_database_url.replace("+psycopg", "")
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self.connected.set()
                    self._wake("*")  # anything that finished while we were not listening
                    for note in conn.notifies():
                        self._wake(note.payload)
            except Exception as exc:
                failures += 1
                if failures == 1:  # once per outage; waiters fall back to the slow poll
                    log.warning("wait listener lost Postgres (%s); reconnecting", exc)
            self.connected.clear()
            time.sleep(min(1.0 * failures, 10.0))


_listener: _Listener | None = None
_listener_lock = threading.Lock()


def _get_listener() -> _Listener:
    global _listener
    with _listener_lock:
        if _listener is None or _listener.pid != os.getpid():
            _listener = _Listener()
            _listener.connected.wait(5.0)  # a first wait must not miss an early NOTIFY
        return _listener


def _load(task_id: uuid.UUID) -> Row[Any]:
    with transaction() as conn:
        row = conn.execute(select(*Task.__table__.c).where(Task.id == task_id)).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    return row


def wait_for_final(task_id: uuid.UUID, timeout: float | None) -> Row[Any]:
    """The task's row once its state is final; ``TaskTimeout`` if ``timeout`` passes first."""
    if not isinstance(task_id, uuid.UUID):
        task_id = uuid.UUID(str(task_id))
    deadline = None if timeout is None else time.monotonic() + timeout
    poll_s = get_settings().wait_poll_seconds
    listener = _get_listener()
    event = listener.register(task_id)
    try:
        while True:
            event.clear()  # cleared before the read: a NOTIFY after it is not lost
            row = _load(task_id)
            if row.state in FINAL_TASK_STATES:
                return row
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise errors.TaskTimeout(
                    f"task {task_id} is still {row.state} after {timeout}s; it keeps running"
                )
            event.wait(poll_s if remaining is None else min(poll_s, remaining))
    finally:
        listener.unregister(task_id, event)


def result_of(row: Row[Any]) -> Any:
    """The result of a final row, or the error a caller should see (failed, cancelled)."""
    state = str(row.state)
    if state == "failed":
        raise errors.TaskFailed(f"task {row.id} failed: {row.last_error}")
    if state == "cancelled":
        raise errors.TaskCancelled(
            f"task {row.id} was cancelled" + (f": {row.last_error}" if row.last_error else "")
        )
    return row.result


def enqueue_and_wait(
    app: Any,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    timeout: float | None,
    **options: Any,
) -> Any:
    """Enqueue by name and wait for the result (seed 002 11.3 sync mode).

    Raises ``TaskFailed`` / ``TaskCancelled`` for those endings and ``TaskTimeout`` (the
    task keeps running; its id is in the message) if ``timeout`` passes first.
    """
    from jobs.enqueue import enqueue

    handle = enqueue(app, name, args, kwargs, **options)
    return result_of(wait_for_final(handle.uuid, timeout))


def wait_all(task_ids: Iterable[uuid.UUID], timeout: float | None) -> list[Row[Any]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    out = []
    for task_id in task_ids:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        out.append(wait_for_final(task_id, left))
    return out
