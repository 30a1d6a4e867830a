"""Request and response bodies. Requests are strict (no "5" for 5) and reject unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator
from sqlalchemy import Row

MAX_COUNTDOWN_S = 10 * 365 * 86400.0  # ten years: beyond that, datetime arithmetic overflows
MAX_TIMEOUT_S = 7 * 86400.0
Text200 = Annotated[str, Field(min_length=1, max_length=200)]


def _clean_text(value: Any, path: str = "value") -> None:
    """PostgreSQL cannot store NUL characters or lone surrogates; refuse them up front."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path} is not valid Unicode") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _clean_text(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean_text(key, f"{path} key")
            _clean_text(item, f"{path}[{key!r}]")


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        _clean_text(value)
        return value


class TaskCreate(Body):
    name: Text200 = Field(description="a registered durable task name")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    session_id: Text200 | None = None
    priority: Annotated[int, Field(ge=1, le=5)] | None = Field(None, description="5 = most urgent")
    countdown: Annotated[float, Field(ge=0, le=MAX_COUNTDOWN_S)] | None = None
    max_retries: Annotated[int, Field(ge=0, le=100)] | None = None
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | None = None
    metadata: dict[str, JsonValue] | None = None
    title: Annotated[str, Field(max_length=2000)] | None = None

    def options(self) -> dict[str, Any]:
        fields = ("session_id", "priority", "countdown", "max_retries", "timeout", "metadata")
        out = {f: getattr(self, f) for f in fields if getattr(self, f) is not None}
        if self.title is not None:
            out["title"] = self.title
        return out


class Approval(Body):
    args: list[JsonValue] | None = Field(None, description="replace the stored args")
    kwargs: dict[str, JsonValue] | None = Field(None, description="replace the stored kwargs")


class Denial(Body):
    reason: Annotated[str, Field(max_length=2000)] = ""


class StepCreate(Body):
    name: Text200
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    max_retries: Annotated[int, Field(ge=0, le=100)] | None = None
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | None = None
    priority: Annotated[int, Field(ge=1, le=5)] | None = None
    metadata: dict[str, JsonValue] | None = None


class GoalCreate(Body):
    title: Annotated[str, Field(min_length=1, max_length=2000)]
    steps: Annotated[list[StepCreate], Field(min_length=1, max_length=1000)]
    description: Annotated[str, Field(max_length=20000)] | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    session_id: Text200 | None = Field(None, description="the session every step runs in")
    metadata: dict[str, JsonValue] | None = None
    start: bool = True


class GoalUpdate(Body):
    title: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    description: Annotated[str, Field(max_length=20000)] | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    metadata: dict[str, JsonValue] | None = None


class Cleanup(Body):
    days: Annotated[int, Field(ge=0, le=36500)] = 30
    dry_run: bool = True


# -- responses -------------------------------------------------------------------------------


class TaskOut(BaseModel):  # type: ignore[no-redef]  # a field named kwargs
    id: uuid.UUID
    name: str
    title: str | None
    state: str
    session_id: str | None
    user_id: str | None
    goal_id: uuid.UUID | None
    step_index: int | None
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    result: Any
    error: str | None
    outcome: str | None
    attempts: int
    retries: int
    max_retries: int
    worker: str | None
    policy_decision: Any = None
    verification_status: str
    metadata: dict[str, Any]
    scheduled_for: datetime
    backoff_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> TaskOut:
        m = row._mapping
        return cls(
            id=m["id"],
            name=m["name"],
            title=m["title"],
            state=str(m["state"]),
            session_id=m["session_id"],
            user_id=m.get("user_id"),
            goal_id=m["goal_id"],
            step_index=m["step_index"],
            priority=m["priority"],
            args=list(m["args"] or []),
            kwargs=dict(m["kwargs"] or {}),
            result=m["result"],
            error=m["last_error"],
            outcome=m["last_outcome"],
            attempts=m["attempts"],
            retries=m["retries"],
            max_retries=m["max_retries"],
            worker=m["worker_id"],
            policy_decision=m.get("policy_decision"),
            verification_status=str(m["verification_status"]),
            metadata=dict(m["metadata"] or {}),
            scheduled_for=m["scheduled_for"],
            backoff_until=m["backoff_until"],
            created_at=m["created_at"],
            started_at=m["started_at"],
            finished_at=m["finished_at"],
            updated_at=m["updated_at"],
        )


class TaskPage(BaseModel):
    items: list[TaskOut]
    limit: int
    next_cursor: str | None


class EventOut(BaseModel):
    id: int
    task_id: uuid.UUID | None
    goal_id: uuid.UUID | None
    event_type: str
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> EventOut:
        m = row._mapping
        return cls(
            id=m["id"],
            task_id=m["task_id"],
            goal_id=m["goal_id"],
            event_type=m["event_type"],
            payload=dict(m["payload"] or {}),
            created_at=m["created_at"],
        )


class EventPage(BaseModel):
    items: list[EventOut]
    limit: int
    next_cursor: str | None


class ApprovalPage(TaskPage):
    pending: int = Field(description="tasks waiting for approval in all (the badge)")


class Progress(BaseModel):
    done: int
    total: int
    text: str = Field(description='e.g. "Processing 3/100"')

    @classmethod
    def of(cls, counts: dict[str, int]) -> Progress:
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "skipped"))
        return cls(done=done, total=total, text=f"Processing {done}/{total}")


class SessionOut(BaseModel):
    id: str
    user_id: str | None = None
    paused: bool = False
    concurrency: int | None = None
    counts: dict[str, int]
    progress: Progress
    unfinished: int
    budget: dict[str, Any] | None = Field(
        None, description="limits, tokens_used, cost_used, tasks_used, exceeded (jobs/budgets.py)"
    )


class SessionPage(BaseModel):
    items: list[SessionOut]
    limit: int
    next_cursor: str | None


class SessionCancelled(BaseModel):
    session_id: str
    cancelled: int


class GoalOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str | None
    status: str
    user_id: str | None
    priority: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    progress: Progress
    steps: list[TaskOut] | None = None


class GoalPage(BaseModel):
    items: list[GoalOut]
    limit: int
    next_cursor: str | None


class StatsOut(BaseModel):
    counts: dict[str, int]
    avg_wait_ms: float | None
    avg_processing_ms: float | None
    completed: int
    pending_approval: int
    open_breakers: list[dict[str, Any]] = Field(
        default_factory=list, description="circuit breakers not closed (admins only)"
    )
    agents: list[dict[str, Any]] = Field(
        default_factory=list, description="pulling agents and their last pull (admins only)"
    )


class CleanupOut(BaseModel):
    dry_run: bool
    days: int
    result: dict[str, int] = Field(description="tasks deleted (or, dry run, to delete) by state")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
