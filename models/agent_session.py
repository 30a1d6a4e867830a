from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JsonDocument, UTCDateTime, utcnow


class AgentSession(Base):
    """An agent's session: its owner, dispatch window, pause flag and labels.

    A row is optional: a session without one has no owner, the default window and runs.
    """

    __tablename__ = "agent_sessions"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[str | None] = mapped_column(String(200))
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    labels: Mapped[dict[str, Any]] = mapped_column(
        JsonDocument, default=dict, server_default=text("'{}'::jsonb")
    )

    __table_args__ = (
        CheckConstraint("concurrency IS NULL OR concurrency >= 1", name="window"),
        Index(None, "user_id"),
    )
