"""Quiet idle logs: Celery's own per-task lines for the sweeps only when they say something.

The sweeps run several times a second, and Celery logs "received",
"succeeded" (worker) and "Sending due task" (beat) at INFO for each one:
about 4 MB an hour of an idle worker's log. Kept at INFO: each sweep's first
success in a process (the sweeps are running) and any success that returned
a count other than 0 (it did something; ``beat/sweeps.py`` says what).
Everything else about sweeps shows at DEBUG only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

SWEEP_PREFIX = "taskledger.sweep."
CELERY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")
IDLE_RESULTS = frozenset({"0", "None", "'0'"})


class SweepNoise(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        args = record.args
        if isinstance(args, Mapping) and "name" in args:  # Celery's worker lines
            name = str(args["name"])
            if not name.startswith(SWEEP_PREFIX):
                return True
            if "return_value" not in args:  # "received"
                return False
            if name not in self.seen:
                self.seen.add(name)
                return True
            return str(args["return_value"]) not in IDLE_RESULTS
        try:  # beat's "Sending due task NAME (TASK)"
            return SWEEP_PREFIX not in record.getMessage()
        except (TypeError, ValueError):
            return True


def install() -> None:
    noise = SweepNoise()
    for name in CELERY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SweepNoise) for f in logger.filters):
            logger.addFilter(noise)
