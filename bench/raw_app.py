"""raw Celery's reference app (``bench/raw_celery_app.py``, a verbatim copy of the shared
``raw_celery.py``'s app) on the benchmark's own Redis.

The reference counts its runs with ``redis.Redis.from_url(RAW_BROKER_URL)``, which does not
read kombu's ``redis+socket://``; here that one function gets redis-py's spelling of the
same URL, so raw Celery and taskledger use the same Redis over the same unix socket.
"""

from __future__ import annotations

import os

import redis

from bench import raw_celery_app as reference
from models.broker import redis_url

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One client per process: prefork children must not share the parent's socket.
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(redis_url(reference.BROKER))
    return client


reference._redis = _redis
app = reference.app
noop = reference.noop
