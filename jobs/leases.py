"""Lease renewal for the attempts a worker process is running (invariant 3).

A daemon thread per process renews every running attempt's lease in one
UPDATE, on the database's clock (the one the reaper compares against). A row
that is no longer ``running`` (cancelled from elsewhere) has its cancellation
event set, so cancellation reaches running code even without a Redis pub/sub
listener; a cancelled attempt whose code is still running keeps its lease
(and its session slot) until the code stops. If the process dies, renewal
stops and the lease reaper turns the attempt into a ``worker_lost`` failure.
An attempt stays in the renewal set until its outcome is recorded, so a long
Postgres outage at the end of a task does not let its lease lapse.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import datetime

from sqlalchemy import Connection, func, select, update

from jobs import context
from models import Task, TaskState
from models.db import transaction

log = logging.getLogger(__name__)


def db_now(conn: Connection) -> datetime:
    """The database's clock: leases, backoff and the sweeps all read this one."""
    now: datetime = conn.execute(select(func.now())).scalar_one()
    return now


def lease_until(lease_s: float) -> object:
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, float(lease_s))


def renew(
    conn: Connection, task_ids: list[uuid.UUID], worker_id: str, lease_s: float
) -> set[uuid.UUID]:
    """Extend the leases; return the ids that are still running for this worker.

    A cancelled attempt whose code still runs is renewed too (it holds its slot) but is
    not returned, so the caller signals its cancellation.
    """
    if not task_ids:
        return set()
    stmt = (
        update(Task)
        .where(
            Task.id.in_(task_ids),
            Task.worker_id == worker_id,
            Task.lease_expires_at.is_not(None),
            Task.state.in_([TaskState.RUNNING, TaskState.CANCELLED]),
        )
        .values(lease_expires_at=lease_until(lease_s))
        .returning(Task.id, Task.state)
    )
    return {row.id for row in conn.execute(stmt) if row.state is TaskState.RUNNING}


class LeaseKeeper:
    """Started lazily in each worker child (threads do not survive fork)."""

    _instance: LeaseKeeper | None = None
    _lock = threading.Lock()

    def __init__(self, worker_id: str, lease_s: float, interval_s: float) -> None:
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.interval_s = interval_s
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskledger-lease", daemon=True)
        self._thread.start()

    @classmethod
    def ensure(cls, worker_id: str, lease_s: float, interval_s: float) -> LeaseKeeper:
        with cls._lock:
            keeper = cls._instance
            if keeper is None or keeper.pid != os.getpid():
                keeper = cls._instance = cls(worker_id, lease_s, interval_s)
            return keeper

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            ids = context.held_ids()
            if not ids:
                continue
            try:
                with transaction() as conn:
                    kept = renew(conn, ids, self.worker_id, self.lease_s)
                # A row no longer running for us was cancelled, or reaped and handed on:
                # either way this attempt's work is void, so tell the handler to stop.
                gone = [i for i in ids if i not in kept]
                if gone:
                    context.signal_cancel(gone)
            except Exception:
                log.warning("lease renewal failed; will try again", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
