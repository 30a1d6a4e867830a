"""Celery signal handlers for worker processes."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_prerun, worker_process_init, worker_process_shutdown
from celery.worker import control as worker_control

from jobs import revoke as ledger_revoke
from models.broker import redis_client
from models.db import (
    dispose_engines,
    enable_statement_counting,
    set_pre_ping,
    statement_counts,
)
from models.settings import get_settings
from workers.cancel import ensure_listener

log = logging.getLogger(__name__)


@worker_process_init.connect
def _fresh_child(**_: Any) -> None:
    # Sockets inherited from the parent must not be shared with it.
    dispose_engines()
    set_pre_ping(False)
    if get_settings().count_statements:
        enable_statement_counting()


@task_prerun.connect
def _before_task(**_: Any) -> None:
    ensure_listener()


@worker_process_shutdown.connect
def _report_statements(**_: Any) -> None:
    settings = get_settings()
    if not settings.count_statements:
        return
    client = redis_client()
    client.incrby("taskledger:bench:statements", statement_counts["statements"])
    client.incrby("taskledger:bench:commits", statement_counts["commits"])


# -- `celery control revoke ID` is a cancel in the ledger -----------------------------------
# The CLI broadcasts "revoke" straight to the workers (no app.control.revoke on the caller's
# side), so every worker cancels the row before Celery's own handler flags the id and, with
# terminate, stops the running process. Idempotent: only the first worker finds a row to cancel.
_celery_revoke = worker_control.Panel.data["revoke"]


def _revoke_in_ledger(
    state: Any, task_id: Any, terminate: bool = False, signal: Any = None, **kwargs: Any
) -> Any:
    hostname = getattr(getattr(state, "consumer", None), "hostname", "a worker")
    try:
        ledger_revoke.revoke(
            state.app, task_id, source=f"celery control revoke ({hostname})", terminate=terminate
        )
    except Exception:
        log.warning("revoke of %s: could not cancel it in the ledger", task_id, exc_info=True)
    return _celery_revoke(state, task_id, terminate=terminate, signal=signal, **kwargs)


worker_control.Panel.data["revoke"] = _revoke_in_ledger
