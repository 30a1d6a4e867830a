"""Cron fires and pulses: one row per scheduled fire of a cron task, one per pulse.

A fire's run key is (name, scheduled_at): the unique index is what makes two
beats, or a beat and a pulse, start the same fire once. A fire that started
work links its ledger task (``task_id``); its status is that task's state, so
the ledger stays the one truth. A skipped fire has no task and a reason.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, JsonDocument, UTCDateTime, utcnow


class CronRun(Base):
    __tablename__ = "cron_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))  # the cron task's name, not the Celery task's
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the slot this fire is for
    trigger: Mapped[str] = mapped_column(String(20))  # beat | pulse | manual
    fired_by: Mapped[str] = mapped_column(String(300))  # host:pid of the beat or pulse
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), unique=True
    )
    skipped_reason: Mapped[str | None] = mapped_column(String(60))
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)

    __table_args__ = (
        # The run key: one fire per cron task and scheduled time, whoever fires it.
        Index("uq_cron_runs_run_key", "name", "scheduled_at", unique=True),
    )


class PulseRun(Base):
    """One ``taskledger pulse``: what it found due, ran and skipped."""

    __tablename__ = "cron_pulses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
