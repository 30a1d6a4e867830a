"""Celery signal handlers for worker processes."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_prerun, worker_process_init, worker_process_shutdown
from sqlalchemy import event
from sqlalchemy.engine import Engine

from models.db import dispose_engines, set_pre_ping
from models.settings import get_settings
from workers.cancel import ensure_listener

log = logging.getLogger(__name__)
_statements = {"count": 0, "commits": 0}


@worker_process_init.connect
def _fresh_child(**_: Any) -> None:
    # Sockets inherited from the parent must not be shared with it.
    dispose_engines()
    set_pre_ping(False)
    if get_settings().count_statements:
        event.listen(Engine, "before_cursor_execute", _count_statement)
        event.listen(Engine, "commit", _count_commit)


@task_prerun.connect
def _before_task(**_: Any) -> None:
    ensure_listener()


def _count_statement(*_: Any) -> None:
    _statements["count"] += 1


def _count_commit(*_: Any) -> None:
    _statements["commits"] += 1


@worker_process_shutdown.connect
def _report_statements(**_: Any) -> None:
    settings = get_settings()
    if not (settings.count_statements and settings.uses_redis):
        return
    import redis

    client = redis.Redis.from_url(settings.resolved_broker_url)
    client.incrby("taskledger:bench:statements", _statements["count"])
    client.incrby("taskledger:bench:commits", _statements["commits"])
