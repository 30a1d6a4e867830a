"""How long each sweep took, kept in Redis for /metrics (the API reads it; sweeps run in
workers, another process). Best effort: a Redis hiccup never fails a sweep."""

from __future__ import annotations

import logging

import redis

from models.broker import redis_client

log = logging.getLogger(__name__)
LAST_KEY = "taskledger:sweep:seconds"  # hash: sweep name -> duration of its last run
SUM_KEY = "taskledger:sweep:seconds_sum"
COUNT_KEY = "taskledger:sweep:runs"


def record(name: str, seconds: float) -> None:
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hset(LAST_KEY, name, f"{seconds:.6f}")
        pipe.hincrbyfloat(SUM_KEY, name, seconds)
        pipe.hincrby(COUNT_KEY, name, 1)
        pipe.execute()
    except redis.RedisError:
        log.debug("sweep timing not recorded", exc_info=True)
