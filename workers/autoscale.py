"""``--autoscale=MAX,MIN`` that sees the ledger's backlog, not just the broker's messages.

Celery's own ``Autoscaler`` sizes the pool by the messages this worker has
reserved. With the dispatch window most runnable work waits in Postgres with
no message at all (a session's backlog beyond its window), and with prefetch 1
a worker never reserves more than it can run, so the stock autoscaler never
sees the queue. Here the wanted size is the number of tasks that are running
or may run now (queued, due, not held by a paused session or queue or an open
breaker), read from the ledger at most once per ``REFRESH_S``; Celery's logic
does the rest (grow at once, shrink after ``AUTOSCALE_KEEPALIVE`` seconds idle).

Set by ``worker_autoscaler`` in ``workers/app.py``; active only with ``--autoscale``.
Every worker counts the whole cluster's backlog, so N autoscaling workers may
each grow for the same rows: size MAX per worker with that in mind.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.worker.autoscale import Autoscaler
from sqlalchemy import func, select

log = logging.getLogger(__name__)

REFRESH_S = 1.0


def ledger_backlog(limit: int) -> int:
    """Running tasks plus queued ones that may run now, counted up to ``limit``."""
    from jobs import holds
    from models import Task, TaskState, utcnow
    from models.db import transaction

    now = utcnow()
    runnable = (
        select(Task.id)
        .where(Task.state == TaskState.QUEUED, Task.scheduled_for <= now, *holds.runnable(now))
        .limit(limit)
    )
    running = select(Task.id).where(Task.state == TaskState.RUNNING).limit(limit)
    with transaction() as conn:
        queued = conn.execute(select(func.count()).select_from(runnable.subquery())).scalar_one()
        busy = conn.execute(select(func.count()).select_from(running.subquery())).scalar_one()
    return min(limit, int(queued) + int(busy))


class LedgerAutoscaler(Autoscaler):
    """Celery's autoscaler with ``qty`` read from the ledger (cached ``REFRESH_S``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backlog = 0
        self._read_at = 0.0

    @property
    def qty(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= REFRESH_S:
            self._read_at = now
            try:
                self._backlog = ledger_backlog(self.max_concurrency)
            except Exception:
                # Postgres away: keep the last figure; the pool is not resized on a guess.
                log.warning("autoscaler could not read the ledger backlog", exc_info=True)
        reserved = int(super().qty)  # messages already here count too
        return max(self._backlog, reserved)
