"""Markdown task lists (seed 001): the executor state per list, and its items.

A list is a goal; each item is a ledger task (``task_list_items.task_id``), so
audit, retries, leases and cancellation are the ledger's own. These tables
keep what the ledger has no column for: the file, the executor's state and
the item's place in the file (section, position, priority, dependencies).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JsonDocument, UTCDateTime, enum_values, utcnow
from models.states import ListStatus

__all__ = ["ListStatus", "TaskList", "TaskListItem"]


class TaskList(Base):
    """One markdown file and its executor (seed 001's ``executor_state``)."""

    __tablename__ = "task_lists"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    path: Mapped[str] = mapped_column(Text, unique=True)  # canonical absolute path
    title: Mapped[str] = mapped_column(Text)
    goal_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("goals.id", ondelete="CASCADE"))
    status: Mapped[ListStatus] = mapped_column(
        Enum(ListStatus, name="task_list_status", values_callable=enum_values),
        default=ListStatus.STOPPED,
    )
    # handler, session_id, concurrency, max_retries, timeout_s, stop_grace_s
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    total_items: Mapped[int] = mapped_column(Integer, default=0)
    completed_items: Mapped[int] = mapped_column(Integer, default=0)
    failed_items: Mapped[int] = mapped_column(Integer, default=0)
    skipped_items: Mapped[int] = mapped_column(Integer, default=0)
    current_item_id: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A stop lets running items finish until then; the list sweep cancels what is left.
    stop_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(None, "goal_id"),
        Index(None, "status"),
        CheckConstraint(
            "total_items >= 0 AND completed_items >= 0 AND failed_items >= 0 "
            "AND skipped_items >= 0",
            name="counters",
        ),
    )


class TaskListItem(Base):
    """One checklist item, linked to the ledger task that runs it (seed 001's ``task_queue``).

    A requeued or interrupted item gets a new task; ``task_id`` is always the current one.
    """

    __tablename__ = "task_list_items"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    list_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("task_lists.id", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="SET NULL")
    )
    section: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(2))  # "P1" (most urgent) .. "P4"
    title: Mapped[str] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="")
    dependencies: Mapped[Any] = mapped_column(JsonDocument, default=list)  # item ids
    line: Mapped[int] = mapped_column(Integer)
    checked: Mapped[bool] = mapped_column(Boolean, default=False)  # [x] in the file
    in_file: Mapped[bool] = mapped_column(Boolean, default=True)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("list_id", "item_id"),
        Index(None, "task_id"),
        CheckConstraint("priority IN ('P1', 'P2', 'P3', 'P4')", name="priority"),
    )
