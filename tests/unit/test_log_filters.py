"""Which of Celery's per-sweep log lines stay at INFO (workers/log_filters.py)."""

from __future__ import annotations

import logging
from typing import Any

from workers.log_filters import SweepNoise

RECEIVED = "Task %(name)s[%(id)s] received"
SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"


def record(msg: str, args: Any) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, msg, args, None)


def line(name: str, value: Any = None, *, received: bool = False) -> logging.LogRecord:
    if received:
        return record(RECEIVED, ({"name": name, "id": "x"},))
    return record(SUCCESS, ({"name": name, "id": "x", "runtime": 0.01, "return_value": value},))


def test_idle_sweeps_are_quiet_after_their_first_success() -> None:
    logging.getLogger().setLevel(logging.INFO)
    noise = SweepNoise()
    dispatch = "taskledger.sweep.dispatch"
    assert not noise.filter(line(dispatch, received=True))
    assert noise.filter(line(dispatch, "0"))  # first success: the sweeps run
    assert not noise.filter(line(dispatch, "0"))  # then idle ones are dropped
    assert noise.filter(line(dispatch, "12"))  # a sweep that did something
    assert noise.filter(line("agents.summarise", "0", received=True))  # user tasks untouched
    beat = logging.LogRecord(
        "celery.beat", logging.INFO, __file__, 1, "Scheduler: Sending due task %s (%s)",
        ("retry-sweep", "taskledger.sweep.retry"), None,
    )  # fmt: skip
    assert not noise.filter(beat)


def test_debug_shows_everything() -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        noise = SweepNoise()
        assert noise.filter(line("taskledger.sweep.retry", received=True))
    finally:
        root.setLevel(level)
