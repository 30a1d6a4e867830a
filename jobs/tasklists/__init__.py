"""Markdown task lists (seed 001): a list is a goal, each item a durable task.

``parser`` (pure) reads the file; ``loading`` writes and reconciles it;
``executor`` decides what runs next; ``control`` starts, pauses, stops, skips
and requeues; ``status`` reads it back; ``operations`` is the front door.

The operations are imported on first use: ``jobs.execution`` imports
``jobs.tasklists.executor`` for its hook, and ``operations`` imports
``jobs.cancel``, which imports ``jobs.execution``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.tasklists.operations import (
        load,
        pause,
        requeue,
        resume,
        skip,
        start,
        stop,
        sweep,
    )

__all__ = ["load", "pause", "requeue", "resume", "skip", "start", "stop", "sweep"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from jobs.tasklists import operations

        return getattr(operations, name)
    raise AttributeError(f"module 'jobs.tasklists' has no attribute {name!r}")
