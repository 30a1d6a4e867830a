"""What the sweeps ask the broker: did it forget everything, what waits in a queue.

Queue sizes and contents come from kombu's own channel (its passive
``queue_declare`` and its Redis priority lists), never from a copy of its key
layout, so a change of transport options cannot make the sweeps miscount.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from models.broker import redis_client
from models.settings import Settings

log = logging.getLogger(__name__)
EPOCH_KEY = "taskledger:broker-epoch"
# Transport options (workers/app.py): ten priority lists per queue, "queue:N".
PRIORITY_STEPS = list(range(10))
PRIORITY_SEP = ":"


def broker_was_reset(settings: Settings) -> bool:
    """True the first time this is asked after Redis lost its data.

    A marker key lives in Redis next to the queues; if it is gone, so are the
    queued messages, and every queued row with a message out must be
    published again. The first run ever also answers True (a harmless
    republish: the claim drops duplicates).
    """
    created = redis_client(settings.resolved_broker_url).set(EPOCH_KEY, str(time.time()), nx=True)
    if created:
        log.warning("broker has no epoch marker: it was flushed or restarted; republishing")
    return bool(created)


def queue_sizes(app: Any, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue, as kombu counts them (all priority levels)."""
    from kombu.exceptions import ChannelError

    sizes: dict[str, int] = {}
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            try:
                sizes[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:
                sizes[queue] = 0  # kombu: no list at any priority, i.e. empty
                channel = conn.default_channel  # a failed passive declare may close it
    return sizes


def queued_ids(app: Any, queue: str) -> set[uuid.UUID] | None:
    """The task ids of the messages waiting in ``queue``, or None if the transport cannot
    list them. Read through kombu's Redis channel (its own priority steps and list names)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        lists = getattr(channel, "_q_for_pri", None)
        if lists is None or not hasattr(channel, "client"):
            return None
        names = {lists(queue, pri) for pri in channel.priority_steps}
        ids: set[uuid.UUID] = set()
        with channel.conn_or_acquire() as client:
            for name in names:
                for raw in client.lrange(name, 0, -1):
                    task_id = _task_id(raw)
                    if task_id is not None:
                        ids.add(task_id)
        return ids


def _task_id(raw: bytes) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(json.loads(raw)["headers"]["id"]))
    except (ValueError, KeyError, TypeError):
        return None  # a sweep message or something not ours


def waiting_messages(settings: Settings, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each named queue (metrics); kombu counts them."""
    from workers.app import app

    return queue_sizes(app, [queue for queue in dict.fromkeys(queues) if queue])
