"""Flow-control state: rate-limit start logs and per-session budgets (jobs/ratelimit.py,
jobs/budgets.py). Idempotency and debounce keys are columns of ``tasks``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow

KEY_LIMIT = 400  # a rate key is "<scope>:<value>", the value up to 200 characters


class RateLimit(Base):
    """One rate limit key: at most ``max_starts`` starts in any ``period_s`` window.

    ``starts`` holds the last ``max_starts`` start times (a sliding-window log, oldest
    first); the claim appends to it in the same statement that starts the task.
    """

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(KEY_LIMIT), primary_key=True)
    max_starts: Mapped[int] = mapped_column(Integer)
    period_s: Mapped[float] = mapped_column(Float)
    starts: Mapped[list[datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), default=list, server_default=text("'{}'")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint("max_starts >= 1 AND period_s > 0", name="limit"),)


class SessionBudget(Base):
    """A session's budget (limits, each optional) and its spend so far."""

    __tablename__ = "session_budgets"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    max_tokens: Mapped[int | None] = mapped_column(BigInteger)
    max_cost: Mapped[float | None] = mapped_column(Float)
    max_tasks: Mapped[int | None] = mapped_column(Integer)
    # what happens to new work once over: "approval" (held pending_approval) or "block"
    on_exceed: Mapped[str] = mapped_column(String(20), server_default=text("'approval'"))
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    cost_used: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    tasks_used: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("on_exceed IN ('approval', 'block')", name="on_exceed"),
        CheckConstraint(
            "(max_tokens IS NULL OR max_tokens >= 0) AND (max_cost IS NULL OR max_cost >= 0) "
            "AND (max_tasks IS NULL OR max_tasks >= 0)",
            name="limits",
        ),
    )
