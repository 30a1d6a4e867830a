from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AgentSession(Base):
    """An agent's session. A row is optional: it only overrides the dispatch window."""

    __tablename__ = "agent_sessions"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("concurrency IS NULL OR concurrency >= 1", name="window"),)
