"""Celery signal handlers for worker processes."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_prerun, worker_process_init, worker_process_shutdown

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
    if not (settings.count_statements and settings.uses_redis):
        return
    import redis

    client = redis.Redis.from_url(settings.resolved_broker_url)
    client.incrby("taskledger:bench:statements", statement_counts["statements"])
    client.incrby("taskledger:bench:commits", statement_counts["commits"])
