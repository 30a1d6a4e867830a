"""The periodic sweeps as Celery tasks, driven by beat (``beat.schedule``).

Each sweep is idempotent and takes a try-lock, so a second beat (or a slow
sweep overlapping the next tick) does no harm: the loser simply skips. They
are ``shared_task``s bound to whichever app loads this module (``workers.app``
lists it in ``imports``), so ``beat/`` never imports the app. Each reads the
database's clock. A sweep logs at DEBUG unless it did something.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import shared_task
from sqlalchemy import Connection, func, select

from beat.schedule import DISPATCH, REAP_LEASES, RETRY, TASK_LISTS
from jobs import cancel, sweep_timing
from jobs.dispatch import Dispatch, publish, reserve_after_broker_reset, reserve_due, reserve_lost
from jobs.durable import DurableTask
from jobs.leases import db_now
from jobs.quarantine import is_outage
from jobs.retry import RetryPolicy
from jobs.sweeps import reap_expired_leases, requeue_due_retries, restarted_recently
from models.db import transaction
from models.settings import get_settings
from workers.broker import broker_was_reset, queue_sizes, queued_ids

log = logging.getLogger(__name__)


def _try_lock(conn: Connection, name: str) -> bool:
    """One sweep of a kind at a time across all beats and workers (Postgres advisory lock)."""
    key = zlib.crc32(f"taskledger-sweep:{name}".encode())
    taken = bool(conn.execute(select(func.pg_try_advisory_xact_lock(key))).scalar_one())
    if not taken:
        log.debug("%s sweep skipped: another sweep holds its lock", name)
    return taken


def _publish(app: Any, dispatches: list[Dispatch]) -> int:
    return publish(app, dispatches, grace_s=get_settings().timeout_grace_seconds)


def _outage_safe(name: str, sweep: Callable[[], int]) -> int:
    """Postgres away: skip this tick quietly (the next one catches up), no task failure."""
    began = time.perf_counter()
    try:
        return sweep()
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("%s sweep skipped: database unavailable (%s)", name, exc.__class__.__name__)
        return 0
    finally:
        sweep_timing.record(name, time.perf_counter() - began)  # /metrics: sweep durations


@shared_task(name=DISPATCH, bind=True, ignore_result=True)
def dispatch_sweep(self: Any) -> int:
    """Publish due work: new rows, rows whose message was lost, everything after a reset."""
    return _outage_safe("dispatch", lambda: _dispatch(self.app))


def _dispatch(app: Any) -> int:
    settings = get_settings()
    sent = 0
    if broker_was_reset(settings):
        sent += republish_all(app)
    with transaction() as conn:
        if not _try_lock(conn, "dispatch"):
            return sent
        now = db_now(conn)
        dispatches = reserve_due(
            conn, now, batch=settings.sweep_batch_size, default_window=settings.session_concurrency
        )
        dispatches += reserve_lost(
            conn,
            now,
            older_than_s=settings.redispatch_after_seconds,
            batch=settings.sweep_batch_size,
            waiting_in=partial(queue_sizes, app),
            present_in=partial(queued_ids, app),
        )
    sent += _publish(app, dispatches)
    if sent:
        log.info("dispatch sweep published %d message(s)", sent)
    return sent


def republish_all(app: Any) -> int:
    """After the broker lost its queues: every queued row with a message out, in batches."""
    settings = get_settings()
    after = None
    sent = 0
    while True:
        with transaction() as conn:
            batch = reserve_after_broker_reset(
                conn, db_now(conn), batch=settings.sweep_batch_size, after=after
            )
        if not batch:
            return sent
        sent += _publish(app, batch)
        after = batch[-1].id


@shared_task(name=RETRY, bind=True, ignore_result=True)
def retry_sweep(self: Any) -> int:
    """seed 000's retryFailedTasks: queue every task whose backoff is over, and publish."""
    return _outage_safe("retry", lambda: _retry(self.app))


def _retry(app: Any) -> int:
    settings = get_settings()
    with transaction() as conn:
        if not _try_lock(conn, "retry"):
            return 0
        dispatches = requeue_due_retries(
            conn,
            db_now(conn),
            batch=settings.sweep_batch_size,
            default_window=settings.session_concurrency,
        )
    sent = _publish(app, dispatches)
    if sent:
        log.info("retry sweep published %d message(s)", sent)
    return sent


def policy_for(app: Any, name: str) -> RetryPolicy:
    task = app.tasks.get(name)
    if isinstance(task, DurableTask):
        return task.retry_policy()
    s = get_settings()
    return RetryPolicy(
        base_s=s.retry_base_seconds, cap_s=s.retry_cap_seconds, jitter=s.retry_jitter
    )


@shared_task(name=REAP_LEASES, bind=True, ignore_result=True)
def reap_leases_sweep(self: Any) -> int:
    """Expired lease = lost worker: a failed attempt (worker_lost or timeout), then retry rules."""
    return _outage_safe("reaper", lambda: _reap(self.app))


def _reap(app: Any) -> int:
    settings = get_settings()
    with transaction() as conn:
        if not _try_lock(conn, "reaper"):
            return 0
        if restarted_recently(conn, settings.lease_seconds):
            log.debug("reaper waits: Postgres restarted less than one lease ago")
            return 0
        reaped = reap_expired_leases(
            conn,
            db_now(conn),
            batch=settings.sweep_batch_size,
            grace_s=settings.timeout_grace_seconds,
            default_window=settings.session_concurrency,
            policy_for=partial(policy_for, app),
        )
    if reaped.failed:
        log.warning("lease reaper failed %d attempt(s) (lost worker or past time)", reaped.failed)
    if reaped.freed:
        log.info("lease reaper freed the slots of %d stopped cancelled attempt(s)", reaped.freed)
    # Hung code (threads/solo pool) is told to stop; its outcome will be discarded anyway.
    cancel.notify_running(settings, reaped.overdue)
    _publish(app, reaped.dispatches)
    return reaped.failed + reaped.freed


@shared_task(name=TASK_LISTS, bind=True, ignore_result=True)
def task_list_sweep(self: Any) -> int:
    """Task lists: cancel what a stop's grace ran out on; settle lists left waiting."""
    from jobs import tasklists

    return _outage_safe("task list", lambda: tasklists.sweep(self.app))
