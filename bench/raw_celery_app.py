# mypy: ignore-errors
# A verbatim copy of the shared reference (../shared/bench/raw_celery_app.py), so a fresh
# clone has it; bench/raw_app.py points its Redis counter at the bench's own Redis.
"""The reference: a no-op Celery task on Redis, configured the way a careful
user would run raw Celery (acks_late, reject on worker lost, prefetch 1).
Each run counts itself in Redis so the driver can see the queue drain."""

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("RAW_BROKER_URL", "redis://127.0.0.1:6379/15")
app = Celery("raw_celery_app", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("RAW_PREFETCH", "1")),
    task_ignore_result=True,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)
_r = None


def _redis():
    global _r
    if _r is None:
        _r = redis.Redis.from_url(BROKER)
    return _r


@app.task(name="raw.noop")
def noop(sent_at=None):
    r = _redis()
    if sent_at is not None:
        r.rpush("raw:lat", time.time() - sent_at)
    r.incr("raw:done")
