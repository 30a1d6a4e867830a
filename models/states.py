"""The lifecycle of tasks and goals: the states, and which moves are allowed.

Task states (stored in ``tasks.state``)::

                    approve                      claim (conditional UPDATE)
  pending_approval ─────────► queued ────────────────────────► running
        │ deny                  ▲  ▲                            │  │  │
        ▼                       │  │ retry sweep (backoff over) │  │  └──► completed
    cancelled ◄─────────────────┤  └──────────── retry_wait ◄───┘  │
        ▲   (cancel from any    │ unblock         (retries left)   └──► failed
        │    non-final state)   │ (previous step done)        (exhausted / permanent)
        │                    blocked                                 │ requeue / resume
        │                                                            └──────► queued
  skipped ◄── (skip: queued, blocked, retry_wait, pending_approval, failed)
  failed ◄── (quarantine: a queued or retry_wait row a sweep cannot process; outcome quarantined)
  blocked ◄── (hold: a paused or stopped task list takes back a queued item no worker claimed)

Outcomes are not states: an attempt ends ``ok``, ``error`` (transient),
``permanent``, ``timeout``, ``worker_lost`` or ``verification``; the outcome is
stored in ``tasks.last_outcome`` and in the event payload, and decides between
``retry_wait`` and ``failed``. ``failed`` is final until someone requeues, so
a caller waiting for "completed, failed or cancelled" (seed 002's sync mode)
never stops early on an attempt that will be retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class TaskState(StrEnum):
    PENDING_APPROVAL = "pending_approval"  # policy asked a person first
    BLOCKED = "blocked"  # a goal step waiting for the steps before it
    QUEUED = "queued"  # may run once scheduled_for has passed and its session has room
    RUNNING = "running"  # claimed; lease_expires_at is set and renewed
    RETRY_WAIT = "retry_wait"  # attempt failed, retries left; due at backoff_until
    COMPLETED = "completed"
    FAILED = "failed"  # permanent error or retries exhausted
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # passed over on purpose; a goal treats it as done


class GoalStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Verification(StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    FAILED = "failed"


class Outcome(StrEnum):
    """How one attempt ended."""

    OK = "ok"
    ERROR = "error"
    PERMANENT = "permanent"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    VERIFICATION = "verification"
    QUARANTINED = "quarantined"  # a sweep could not process the row; it was set aside


class ListStatus(StrEnum):
    """seed 001's executor_state.status: a task list's executor."""

    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"


S = TaskState
TASK_TRANSITIONS: Final[Mapping[TaskState, frozenset[TaskState]]] = {
    S.PENDING_APPROVAL: frozenset({S.QUEUED, S.CANCELLED, S.SKIPPED}),
    S.BLOCKED: frozenset({S.QUEUED, S.CANCELLED, S.SKIPPED}),
    # failed: quarantine; blocked: a paused or stopped task list takes back what no
    # worker has claimed yet (jobs/tasklists/control.py)
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.SKIPPED, S.FAILED, S.BLOCKED}),
    S.RUNNING: frozenset({S.COMPLETED, S.RETRY_WAIT, S.FAILED, S.CANCELLED}),
    S.RETRY_WAIT: frozenset({S.QUEUED, S.CANCELLED, S.SKIPPED, S.FAILED}),  # failed: quarantine
    S.FAILED: frozenset({S.QUEUED, S.SKIPPED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.SKIPPED: frozenset(),
}

FINAL_TASK_STATES: Final = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED})
# States a goal counts as done with when moving to the next step.
DONE_STEP_STATES: Final = frozenset({S.COMPLETED, S.SKIPPED})

G = GoalStatus
GOAL_TRANSITIONS: Final[Mapping[GoalStatus, frozenset[GoalStatus]]] = {
    G.OPEN: frozenset({G.IN_PROGRESS, G.CANCELLED}),
    G.IN_PROGRESS: frozenset({G.COMPLETED, G.FAILED, G.CANCELLED}),
    G.FAILED: frozenset({G.IN_PROGRESS, G.CANCELLED}),
    G.COMPLETED: frozenset(),
    G.CANCELLED: frozenset(),
}


def task_sources(target: TaskState) -> frozenset[TaskState]:
    """Every state from which ``target`` may be reached."""
    return frozenset(src for src, targets in TASK_TRANSITIONS.items() if target in targets)


def goal_sources(target: GoalStatus) -> frozenset[GoalStatus]:
    return frozenset(src for src, targets in GOAL_TRANSITIONS.items() if target in targets)
