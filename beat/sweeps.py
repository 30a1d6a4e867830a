"""The periodic sweeps as Celery tasks on the sweeps queue, driven by beat.

Each sweep is idempotent and takes a try-lock, so a second beat (or a slow
sweep overlapping the next tick) does no harm: the loser simply skips.
"""

from __future__ import annotations

import logging
import zlib
from functools import partial

from sqlalchemy import Connection, func, select

from beat.schedule import DISPATCH, REAP_LEASES, RETRY
from jobs.dispatch import Dispatch, publish, reserve_after_broker_reset, reserve_due, reserve_lost
from jobs.durable import DurableTask
from jobs.retry import RetryPolicy
from jobs.sweeps import reap_expired_leases, requeue_due_retries
from models import utcnow
from models.db import is_postgres, transaction
from models.settings import get_settings
from workers.app import app
from workers.broker import broker_was_reset, waiting_messages

log = logging.getLogger(__name__)


def _try_lock(conn: Connection, name: str) -> bool:
    """One sweep of a kind at a time across all beats and workers (Postgres advisory lock)."""
    if not is_postgres(conn):
        return True  # SQLite: BEGIN IMMEDIATE already serialises writers
    key = zlib.crc32(f"taskledger-sweep:{name}".encode())
    return bool(conn.execute(select(func.pg_try_advisory_xact_lock(key))).scalar_one())


def _publish(dispatches: list[Dispatch]) -> int:
    return publish(app, dispatches, grace_s=get_settings().timeout_grace_seconds)


@app.task(name=DISPATCH, ignore_result=True)
def dispatch_sweep() -> int:
    """Publish due work: new rows, rows whose message was lost, everything after a reset."""
    settings = get_settings()
    sent = 0
    if broker_was_reset(settings):
        sent += republish_all()
    now = utcnow()
    with transaction() as conn:
        if not _try_lock(conn, "dispatch"):
            return sent
        dispatches = reserve_due(
            conn, now, batch=settings.sweep_batch_size, default_window=settings.session_concurrency
        )
        dispatches += reserve_lost(
            conn,
            now,
            older_than_s=settings.redispatch_after_seconds,
            batch=settings.sweep_batch_size,
            waiting_in=partial(waiting_messages, settings) if settings.uses_redis else None,
        )
    sent += _publish(dispatches)
    if sent:
        log.info("dispatch sweep published %d message(s)", sent)
    return sent


def republish_all() -> int:
    """After the broker lost its queues: every queued row with a message out, in batches."""
    settings = get_settings()
    after = None
    sent = 0
    while True:
        with transaction() as conn:
            batch = reserve_after_broker_reset(
                conn, utcnow(), batch=settings.sweep_batch_size, after=after
            )
        if not batch:
            return sent
        sent += _publish(batch)
        after = batch[-1].id


@app.task(name=RETRY, ignore_result=True)
def retry_sweep() -> int:
    """seed 000's retryFailedTasks: queue every task whose backoff is over, and publish."""
    settings = get_settings()
    with transaction() as conn:
        if not _try_lock(conn, "retry"):
            return 0
        dispatches = requeue_due_retries(
            conn,
            utcnow(),
            batch=settings.sweep_batch_size,
            default_window=settings.session_concurrency,
        )
    return _publish(dispatches)


def policy_for(name: str) -> RetryPolicy:
    task = app.tasks.get(name)
    if isinstance(task, DurableTask):
        return task.retry_policy()
    s = get_settings()
    return RetryPolicy(
        base_s=s.retry_base_seconds, cap_s=s.retry_cap_seconds, jitter=s.retry_jitter
    )


@app.task(name=REAP_LEASES, ignore_result=True)
def reap_leases_sweep() -> int:
    """Expired lease = lost worker: a failed attempt (worker_lost or timeout), then retry rules."""
    settings = get_settings()
    with transaction() as conn:
        if not _try_lock(conn, "reaper"):
            return 0
        reaped, dispatches = reap_expired_leases(
            conn,
            utcnow(),
            batch=settings.sweep_batch_size,
            grace_s=settings.timeout_grace_seconds,
            default_window=settings.session_concurrency,
            policy_for=policy_for,
        )
    if reaped:
        log.warning("lease reaper failed %d attempt(s) whose worker was lost", reaped)
    _publish(dispatches)
    return reaped
