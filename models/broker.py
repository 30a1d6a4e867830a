"""The Redis connection, as ``models/db.py`` is the Postgres one: one client factory.

The broker URL is kombu's spelling: ``redis://host:port/db`` or
``redis+socket:///path/to/redis.sock`` (the embedded stack's unix socket).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlparse

import redis

from models.settings import get_settings

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_url(broker_url: str) -> str:
    """redis-py's spelling of a kombu broker URL (``redis+socket://`` -> ``unix://``)."""
    if broker_url.startswith("redis+socket://"):
        parsed = urlparse(broker_url)
        db = parse_qs(parsed.query).get("virtual_host", ["0"])[0]
        return f"unix://{parsed.path}?db={db or 0}"
    if broker_url.startswith("socket://"):
        return "unix://" + broker_url[len("socket://") :]
    return broker_url


def redis_client(url: str | None = None, **options: Any) -> redis.Redis:
    """A client for ``url`` (default: the broker), shared per process and URL.

    Options make a private client (pub/sub listeners want their own socket timeouts).
    """
    target = redis_url(url or get_settings().resolved_broker_url)
    if options:
        return redis.Redis.from_url(target, **options)
    key = (os.getpid(), target)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.setdefault(key, redis.Redis.from_url(target))
    return client
