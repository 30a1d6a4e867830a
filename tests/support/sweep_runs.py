"""Every sweep run in the test workers, recorded so a test can tell which ran at once.

The workers' INFO log cannot tell: ``workers/log_filters.py`` keeps a sweep's success
out of it unless it is that sweep's first in the process or it did something, so most
runs leave no line (test_beat once read them from there and saw too few to overlap).
Celery's ``task_prerun``/``task_postrun`` signals record each run instead, in the
counter Redis (TEST_COUNTER_URL, flushed by each test's ``clean`` fixture).
Loaded in the workers through ``tests.support.tasks``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

KEY = "sweep_runs"
KEEP = 20_000  # the newest runs; about 20 minutes of two beats' ticks
SWEEP_PREFIX = "taskledger.sweep."

_began: dict[str, float] = {}
_redis: redis.Redis | None = None


@dataclass(frozen=True)
class SweepRun:
    sweep: str
    process: str  # worker node and pool process id
    start: float  # time.time() in that process: one machine, one clock
    end: float
    result: Any


def _counter() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["TEST_COUNTER_URL"])
    return _redis


@task_prerun.connect
def _on_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is not None and str(task.name).startswith(SWEEP_PREFIX):
        _began[task_id] = time.time()


@task_postrun.connect
def _on_postrun(task_id: str = "", task: Any = None, retval: Any = None, **_: Any) -> None:
    start = _began.pop(task_id, None)
    if start is None:
        return
    process = f"{task.request.hostname}/{os.getpid()}"
    result = retval if isinstance(retval, int | str | None) else repr(retval)
    run = json.dumps([task.name, process, start, time.time(), result])
    pipe = _counter().pipeline(transaction=False)
    pipe.rpush(KEY, run)
    pipe.ltrim(KEY, -KEEP, -1)
    pipe.execute()


def recorded(client: redis.Redis) -> list[SweepRun]:
    """The runs recorded since the counter Redis was last flushed, oldest first."""
    return [SweepRun(*json.loads(raw)) for raw in client.lrange(KEY, 0, -1)]


def overlapping(runs: list[SweepRun]) -> list[tuple[SweepRun, SweepRun]]:
    """Pairs of runs of the same sweep, in different processes, that overlapped in time."""
    by_sweep: dict[str, list[SweepRun]] = {}
    for run in runs:
        by_sweep.setdefault(run.sweep, []).append(run)
    pairs = []
    for same in by_sweep.values():
        same.sort(key=lambda r: r.start)
        for i, a in enumerate(same):
            for b in same[i + 1 :]:
                if b.start >= a.end:
                    break  # sorted by start: no later run overlaps ``a`` either
                if a.process != b.process:
                    pairs.append((a, b))
    return pairs
