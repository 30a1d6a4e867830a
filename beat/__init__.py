"""Periodic work: the sweeps and beat schedule, cron tasks, side tasks and pulse.

``from beat import cron, side_task`` is cheap (standard library only): Django,
croniter and the scheduler load only where they run (beat, pulse, sidecar, CLI).
"""

from beat.cron import cron
from beat.side import side_task

__all__ = ["cron", "side_task"]
