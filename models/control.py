"""Tables of agent safety and control: paused queues, circuit breakers, pulling agents.

Sessions (owner, window, pause, labels) live on ``agent_sessions``; these are the rest.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow

BREAKER_STATES = ("closed", "open", "half_open")


class QueuePause(Base):
    """A row means the queue is paused: nothing new of it starts until the row is gone."""

    __tablename__ = "queue_pauses"

    queue: Mapped[str] = mapped_column(String(200), primary_key=True)
    paused_by: Mapped[str] = mapped_column(String(200))
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CircuitBreaker(Base):
    """Per task name (seed 000): consecutive failures open it; a trial after the cool-down."""

    __tablename__ = "circuit_breakers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # open: the cool-down ends here; half_open: a new trial may start after this (a lost trial)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trial_task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "state IN ('closed', 'open', 'half_open')",
            name="state",
        ),
    )


class AgentPull(Base):
    """An agent that pulls work (seed 004): when it last asked, so stats show absent agents."""

    __tablename__ = "agent_pulls"

    agent_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    last_pull_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    pulls: Mapped[int] = mapped_column(BigInteger, default=0)
