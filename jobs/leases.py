"""Lease renewal for the attempts a worker process is running (invariant 3).

A daemon thread per process renews every running attempt's lease in one
UPDATE. A row that is no longer ``running`` (cancelled from elsewhere) has its
cancellation event set, so cancellation reaches running code even without a
Redis pub/sub listener. If the process dies, renewal stops and the lease
reaper turns the attempt into a ``worker_lost`` failure.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, update

from jobs import context
from models import Task, TaskState, utcnow
from models.db import transaction

log = logging.getLogger(__name__)


def renew(
    conn: Connection, task_ids: list[uuid.UUID], worker_id: str, lease_s: float, now: datetime
) -> set[uuid.UUID]:
    """Extend the leases; return the ids that are still running for this worker."""
    if not task_ids:
        return set()
    stmt = (
        update(Task)
        .where(Task.id.in_(task_ids), Task.state == TaskState.RUNNING, Task.worker_id == worker_id)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(Task.id)
    )
    return set(conn.execute(stmt).scalars())


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
            ids = context.running_ids()
            if not ids:
                continue
            try:
                with transaction() as conn:
                    kept = renew(conn, ids, self.worker_id, self.lease_s, utcnow())
                # A row no longer running for us was cancelled, or reaped and handed on:
                # either way this attempt's work is void, so tell the handler to stop.
                gone = [i for i in ids if i not in kept]
                if gone:
                    context.signal_cancel(gone)
            except Exception:
                log.warning("lease renewal failed; will try again", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
