"""Celery's revoke is a cancel in the ledger.

``app.control.revoke(id)`` (the producer side, ``workers.app``) and ``celery
control revoke ID`` (the broadcast, handled in every worker, ``workers.signals``)
both land here before Celery's own revoke runs: the row is cancelled with an
event naming where the revoke came from, its session slot is released, and
running code gets its cancellation signal. Idempotent: every worker receiving
the broadcast calls it, and only the first finds something to cancel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from jobs import cancel, errors
from jobs.enqueue import publish_quietly
from models import utcnow
from models.db import transaction
from models.settings import get_settings

log = logging.getLogger(__name__)


def ledger_ids(task_ids: Any) -> list[uuid.UUID]:
    """The ids (one or a list, as Celery accepts) that can be ledger rows."""
    raw: Iterable[Any] = [task_ids] if isinstance(task_ids, str | uuid.UUID) else task_ids or []
    out = []
    for value in raw:
        try:
            out.append(uuid.UUID(str(value)))
        except ValueError:
            continue  # a plain Celery task's id: Celery's own revoke handles it
    return out


def revoke(app: Any, task_ids: Any, *, source: str, terminate: bool = False) -> list[uuid.UUID]:
    """Cancel every listed task that is in the ledger and not final; return those ids."""
    settings = get_settings()
    reason = f"revoked via {source}" + (" (terminate)" if terminate else "")
    cancelled = []
    for task_id in ledger_ids(task_ids):
        try:
            with transaction() as conn:
                _row, dispatches = cancel.cancel_task(
                    conn,
                    task_id,
                    reason=reason,
                    now=utcnow(),
                    default_window=settings.session_concurrency,
                )
        except (errors.InvalidTransition, errors.NotFound):
            continue  # final already, revoked by another worker, or not a ledger task
        publish_quietly(app, dispatches, settings)
        cancelled.append(task_id)
    if cancelled:
        cancel.notify_running(settings, cancelled)
        log.info("revoke from %s cancelled %d ledger task(s)", source, len(cancelled))
    return cancelled
