"""A validated task (``TaskSpec``) and the checks that build one (``build_spec``).

Part of the enqueue path (``jobs/enqueue.py`` is the front door): everything here is
pure validation, nothing is written. Bad input raises an ``InvalidTaskInput`` subclass.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobs import errors, flow
from jobs.dispatch import Dispatch
from jobs.flow import FlowControls
from models import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, TaskState
from models.settings import Settings

MAX_RETRIES_LIMIT = 100
NAME_LIMIT = 200


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A validated task, ready to insert."""

    id: uuid.UUID
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int = DEFAULT_PRIORITY
    session_id: str | None = None
    scheduled_for: datetime
    max_retries: int
    timeout_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    goal_id: uuid.UUID | None = None
    step_index: int | None = None
    state: TaskState = TaskState.QUEUED
    expires_at: datetime | None = None  # Celery's ``expires``: still queued then -> cancelled
    user_id: str | None = None  # the owner; jobs.admission fills in the session's
    policy_decision: dict[str, Any] | None = None  # set by jobs.admission (policy)
    flow: FlowControls | None = None  # idempotency, rate limit, debounce (jobs/flow.py)

    @property
    def publishes_at_once(self) -> bool:
        """Sessionless, due and queued: its message goes out right after the commit."""
        return self.session_id is None and self.state is TaskState.QUEUED

    def row(self, now: datetime) -> dict[str, Any]:
        due = self.scheduled_for <= now
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "goal_id": self.goal_id,
            "step_index": self.step_index,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "policy_decision": self.policy_decision,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "state": self.state,
            "priority": self.priority,
            "attempts": 0,
            "retries": 0,
            "max_retries": self.max_retries,
            "scheduled_for": self.scheduled_for,
            "timeout_s": self.timeout_s,
            "dispatched_at": now if self.publishes_at_once and due else None,
            "dispatch_count": 1 if self.publishes_at_once and due else 0,
            "metadata": self.meta,
            "expires_at": self.expires_at,
            **flow.columns(self.flow),
            "created_at": now,
            "updated_at": now,
        }

    def dispatch(self) -> Dispatch:
        return Dispatch(
            id=self.id,
            name=self.name,
            args=self.args,
            kwargs=self.kwargs,
            queue=self.queue,
            priority=self.priority,
            timeout_s=self.timeout_s,
        )


def build_spec(
    name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    settings: Settings,
    now: datetime,
    queue: str,
    task_id: str | uuid.UUID | None = None,
    session_id: str | None = None,
    priority: int | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    title: str | None = None,
    user_id: str | None = None,
    expires: float | datetime | None = None,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
) -> TaskSpec:
    """Check every option and return a spec; raise ``InvalidTaskInput`` on the first problem."""
    if not isinstance(name, str) or not name or len(name) > NAME_LIMIT:
        raise errors.UnknownTask(f"task name must be a non-empty string; got {name!r}")
    args_list = _check_args(args)
    kwargs_dict = _check_kwargs(kwargs)
    meta = _check_json("metadata", dict(metadata or {}))
    size = len(json.dumps([args_list, kwargs_dict, meta], separators=(",", ":")).encode())
    if size > settings.max_payload_bytes:
        raise errors.PayloadTooLarge(
            f"payload of {name} is {size} bytes; the limit is {settings.max_payload_bytes} "
            "(TASKLEDGER_MAX_PAYLOAD_BYTES). Store large inputs elsewhere and pass a reference."
        )
    scheduled_for = _check_schedule(countdown, eta, now)
    timeout = _timeout_from_limits(timeout, soft_time_limit, time_limit)
    return TaskSpec(
        id=_check_id(task_id),
        name=name,
        args=args_list,
        kwargs=kwargs_dict,
        queue=_check_text("queue", queue),
        priority=check_priority(DEFAULT_PRIORITY if priority is None else priority),
        session_id=None if session_id is None else _check_text("session_id", session_id),
        scheduled_for=scheduled_for,
        expires_at=_check_expires(expires, now),
        max_retries=_check_max_retries(
            settings.default_max_retries if max_retries is None else max_retries
        ),
        timeout_s=_check_timeout(settings.default_timeout_seconds if timeout is None else timeout),
        meta=meta,
        title=None if title is None else str(title),
        user_id=None if user_id is None else _check_text("user_id", user_id),
    )


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise errors.InvalidPriority(
            f"priority must be an integer from {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} "
            f"(highest); got {priority!r}"
        )
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise errors.InvalidPriority(
            f"priority must be from {MIN_PRIORITY} (lowest) to {MAX_PRIORITY} (highest); "
            f"got {priority}"
        )
    return priority


def _check_id(task_id: str | uuid.UUID | None) -> uuid.UUID:
    if task_id is None:
        return uuid.uuid4()
    if isinstance(task_id, uuid.UUID):
        return task_id
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        raise errors.InvalidOption(
            f"task_id must be a UUID string such as Celery's own uuid4 ids (the ledger keys "
            f"every task by it); got {task_id!r}. Pass no task_id to get one."
        ) from None


def _check_expires(expires: Any, now: datetime) -> datetime | None:
    """Celery's ``expires``: seconds from now or an aware datetime."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise errors.InvalidSchedule(
                f"expires must be a timezone-aware datetime or seconds; got {expires!r}"
            )
        return expires
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise errors.InvalidSchedule(f"expires must be seconds or a datetime; got {expires!r}")
    if not math.isfinite(expires) or expires <= 0:
        raise errors.InvalidSchedule(f"expires must be > 0 seconds; got {expires}")
    return now + timedelta(seconds=expires)


def _timeout_from_limits(timeout: Any, soft: Any, hard: Any) -> Any:
    """Celery's limits onto ours: ``soft_time_limit`` is the timeout (the handler gets
    SoftTimeLimitExceeded); ``time_limit`` alone is the timeout too. The hard kill comes
    TASKLEDGER_TIMEOUT_GRACE_SECONDS after it, so a ``time_limit`` is never cut short."""
    if timeout is not None and (soft is not None or hard is not None):
        raise errors.InvalidOption("give timeout or soft_time_limit/time_limit, not both")
    for what, value in (("soft_time_limit", soft), ("time_limit", hard)):
        if value is not None:
            _check_timeout(value, what)
    if soft is not None and hard is not None and hard < soft:
        raise errors.InvalidOption(
            f"time_limit ({hard}s) must not be shorter than soft_time_limit ({soft}s)"
        )
    return soft if soft is not None else (hard if hard is not None else timeout)


def _check_text(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_LIMIT:
        raise errors.InvalidOption(f"{what} must be a non-empty string of at most 200 characters")
    return value


def _check_args(args: Sequence[Any] | None) -> list[Any]:
    if args is None:
        return []
    if isinstance(args, str | bytes | Mapping) or not isinstance(args, Sequence):
        raise errors.ArgsNotSerializable(f"args must be a list or tuple; got {type(args).__name__}")
    return _check_json("args", list(args))


def _check_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise errors.ArgsNotSerializable(f"kwargs must be a dict; got {type(kwargs).__name__}")
    return _check_json("kwargs", dict(kwargs))


def _check_json(what: str, value: Any) -> Any:
    """Plain JSON only: what goes in is exactly what the handler gets back."""
    problem = _json_problem(value, what)
    if problem:
        raise errors.ArgsNotSerializable(f"{problem}; {errors.ArgsNotSerializable.__doc__}")
    return value


def _json_problem(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value}, which JSON cannot hold"
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if problem := _json_problem(item, f"{path}[{i}]"):
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            if problem := _json_problem(item, f"{path}[{key!r}]"):
                return problem
        return None
    return f"{path} is a {type(value).__name__}"


def _check_schedule(countdown: float | None, eta: datetime | None, now: datetime) -> datetime:
    if countdown is not None and eta is not None:
        raise errors.InvalidSchedule("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float):
            raise errors.InvalidSchedule(
                f"countdown must be a number of seconds; got {countdown!r}"
            )
        if not math.isfinite(countdown) or countdown < 0:
            raise errors.InvalidSchedule(f"countdown must be >= 0 seconds; got {countdown}")
        return now + timedelta(seconds=countdown)
    if eta is not None:
        if not isinstance(eta, datetime) or eta.tzinfo is None:
            raise errors.InvalidSchedule(f"eta must be a timezone-aware datetime; got {eta!r}")
        return max(eta, now)
    return now


def _check_max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES_LIMIT:
        raise errors.InvalidOption(
            f"max_retries must be an integer from 0 to {MAX_RETRIES_LIMIT}; got {value!r}"
        )
    return value


def _check_timeout(value: Any, what: str = "timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.InvalidOption(f"{what} must be a number of seconds; got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise errors.InvalidOption(f"{what} must be > 0 seconds; got {value}")
    return float(value)
