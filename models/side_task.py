"""Side tasks' state and their cluster-wide lease.

A singleton side task (the default) has one row keyed by its name; the
process holding an unexpired lease runs it, every other sidecar waits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class SideTaskState(Base):
    __tablename__ = "side_tasks"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)  # name, or name@holder
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))  # running | restarting | stopped | failed
    holder: Mapped[str | None] = mapped_column(String(300))  # host:pid running it
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
