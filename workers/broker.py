"""Noticing that the broker forgot everything (Redis flushed or restarted without disk)."""

from __future__ import annotations

import logging
import time

from models.settings import Settings

log = logging.getLogger(__name__)
EPOCH_KEY = "taskledger:broker-epoch"
PRIORITY_STEPS = list(range(10))
PRIORITY_SEP = ":"


def broker_was_reset(settings: Settings) -> bool:
    """True the first time this is asked after Redis lost its data.

    A marker key lives in Redis next to the queues; if it is gone, so are the
    queued messages, and every queued row with a message out must be
    published again. The first run ever also answers True (a harmless
    republish: the claim drops duplicates).
    """
    if not settings.uses_redis:
        return False
    import redis

    client = redis.Redis.from_url(settings.resolved_broker_url)
    try:
        created = client.set(EPOCH_KEY, str(time.time()), nx=True)
    finally:
        client.close()
    if created:
        log.warning("broker has no epoch marker: it was flushed or restarted; republishing")
    return bool(created)


def waiting_messages(settings: Settings, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue (all priority lists; see workers.app's transport options)."""
    import redis

    client = redis.Redis.from_url(settings.resolved_broker_url)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for key in priority_keys(queue):
                pipe.llen(key)
        lengths = iter(pipe.execute())
    finally:
        client.close()
    return {queue: sum(next(lengths) for _ in priority_keys(queue)) for queue in queues}


def priority_keys(queue: str) -> list[str]:
    # kombu's Redis transport keeps priority 0 in the queue's own list, n in "queue:n".
    return [queue, *(f"{queue}{PRIORITY_SEP}{n}" for n in PRIORITY_STEPS[1:])]
