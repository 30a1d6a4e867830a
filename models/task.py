from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JsonDocument, UTCDateTime, enum_values, utcnow
from models.states import TaskState, Verification

MIN_PRIORITY = 1
MAX_PRIORITY = 5  # seed 004: 5 is the most urgent
DEFAULT_PRIORITY = 3


class Task(Base):
    """One unit of work. The row is the truth; a Celery message only says "look at me".

    The Celery task id is this row's id, so Flower, ``celery inspect`` and the
    API all name the same task.
    """

    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))  # registered Celery task name (the "tool")
    title: Mapped[str | None] = mapped_column(Text)
    goal_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("goals.id", ondelete="CASCADE")
    )
    step_index: Mapped[int | None] = mapped_column(Integer)
    session_id: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))  # owner; defaults to the session's
    queue: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JsonDocument, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    state: Mapped[TaskState] = mapped_column(
        Enum(TaskState, name="task_state", values_callable=enum_values)
    )
    priority: Mapped[int] = mapped_column(Integer, default=DEFAULT_PRIORITY)

    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far; the fencing token
    retries: Mapped[int] = mapped_column(Integer, default=0)  # retries scheduled so far
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # Celery's `expires`
    timeout_s: Mapped[float] = mapped_column(Float)

    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last message published
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(300))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    result: Mapped[Any | None] = mapped_column(JsonDocument)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_outcome: Mapped[str | None] = mapped_column(String(40))
    verification_status: Mapped[Verification] = mapped_column(
        Enum(Verification, name="verification_status", values_callable=enum_values),
        default=Verification.UNVERIFIED,
    )
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDocument, default=dict)
    # the policy rule that decided the enqueue: {"rule", "action", "redacted": [fields]}
    policy_decision: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    # flow controls (jobs/idempotency.py, jobs/ratelimit.py, jobs/debounce.py)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    rate_key: Mapped[str | None] = mapped_column(String(400))
    debounce_key: Mapped[str | None] = mapped_column(String(400))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last attempt's start
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # reached a final state

    __table_args__ = (
        CheckConstraint(f"priority BETWEEN {MIN_PRIORITY} AND {MAX_PRIORITY}", name="priority"),
        CheckConstraint("retries >= 0 AND max_retries >= 0 AND attempts >= 0", name="counters"),
        # seed 002's indexes
        Index(None, "session_id", "state"),
        Index(None, "user_id", "state"),
        Index("ix_tasks_state_priority_created_at", "state", text("priority DESC"), "created_at"),
        Index(None, "worker_id"),
        Index(None, "finished_at", "state"),
        Index(None, "goal_id", "step_index", unique=True),
        # the sweeps' partial indexes: each scans only the rows it can act on
        Index(
            "ix_tasks_due_retry",
            "backoff_until",
            postgresql_where=text("state = 'retry_wait'"),
        ),
        Index(
            "ix_tasks_running_lease",
            "lease_expires_at",
            postgresql_where=text("state = 'running'"),
        ),
        Index(
            "ix_tasks_queued_dispatch",
            "session_id",
            "scheduled_for",
            postgresql_where=text("state = 'queued'"),
        ),
        # one unfinished (or recently finished) task per idempotency key
        Index(
            "uq_tasks_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index(
            "ix_tasks_queued_rate_key",
            "rate_key",
            postgresql_where=text("state = 'queued' AND rate_key IS NOT NULL"),
        ),
        Index(
            "ix_tasks_queued_debounce_key",
            "debounce_key",
            postgresql_where=text("state = 'queued' AND debounce_key IS NOT NULL"),
        ),
    )
