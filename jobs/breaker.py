"""Circuit breaker per task name (seed 000): stop hammering what keeps failing.

``closed``: attempts run; each failed attempt counts, a success resets the count.
At ``threshold`` consecutive failures (default 5; per task with the decorator option
``breaker_threshold`` or ``TASKLEDGER_BREAKER_THRESHOLDS``) it opens: retries and
new starts of that name wait (``jobs/holds.py``) until the cool-down ends
(``breaker_cooldown`` / ``TASKLEDGER_BREAKER_COOLDOWN_SECONDS``). Then the first
claim runs as the one trial (``half_open``): success closes it, failure opens it for
another cool-down. Every change is an audit event (``breaker_opened``,
``breaker_half_open``, ``breaker_closed``).

Failures are counted by ``record_failure`` (called from ``jobs/execution.fail``); a
success is folded into the completion statement (``holds.COMPLETE_BREAKER_CTES``) so the hot path
stays one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs.transitions import record_event
from models import CircuitBreaker
from models.settings import get_settings


@dataclass(frozen=True)
class BreakerConfig:
    threshold: int
    cooldown_s: float


def config_for(name: str) -> BreakerConfig:
    """Decorator options first, then TASKLEDGER_BREAKER_THRESHOLDS, then the defaults."""
    settings = get_settings()
    threshold = settings.breaker_threshold
    cooldown = settings.breaker_cooldown_seconds
    for item in settings.breaker_thresholds.split(","):
        key, _, value = item.partition("=")
        if key.strip() == name and value.strip().isdigit() and int(value) >= 1:
            threshold = int(value)
    try:
        from celery import current_app

        task = current_app.tasks.get(name)
    except Exception:  # no app in this process: settings decide
        task = None
    if task is not None:
        threshold = int(getattr(task, "breaker_threshold", None) or threshold)
        cooldown = float(getattr(task, "breaker_cooldown", None) or cooldown)
    return BreakerConfig(threshold=threshold, cooldown_s=cooldown)


def record_failure(
    conn: Connection, name: str, *, task_id: Any, now: datetime, config: BreakerConfig | None = None
) -> str:
    """Count one failed attempt of ``name``; open the breaker if it crossed the threshold
    (or if this was the half-open trial). Returns the breaker's state afterwards."""
    config = config or config_for(name)
    stmt = pg_insert(CircuitBreaker).values(
        name=name, state="closed", consecutive_failures=1, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[CircuitBreaker.name],
        set_={
            "consecutive_failures": CircuitBreaker.consecutive_failures + 1,
            "updated_at": now,
        },
    )
    row = conn.execute(
        stmt.returning(CircuitBreaker.state, CircuitBreaker.consecutive_failures)
    ).one()
    trial_failed = row.state == "half_open"
    if not trial_failed and (row.state != "closed" or row.consecutive_failures < config.threshold):
        return str(row.state)
    # The cool-down ends on the database's clock: the claim's gate and the dispatch sweep
    # read ``retry_at`` with it, and this worker's clock may be off by seconds.
    retry_at = conn.execute(
        update(CircuitBreaker)
        .where(CircuitBreaker.name == name)
        .values(
            state="open",
            opened_at=now,
            retry_at=func.now() + timedelta(seconds=config.cooldown_s),
            trial_task_id=None,
        )
        .returning(CircuitBreaker.retry_at)
    ).scalar_one()
    record_event(
        conn,
        "breaker_opened",
        {
            "name": name,
            "consecutive_failures": row.consecutive_failures,
            "threshold": config.threshold,
            "cooldown_s": config.cooldown_s,
            "retry_at": retry_at.isoformat() if retry_at else None,
            "reason": "trial failed" if trial_failed else "threshold reached",
        },
        task_id=task_id,
        now=now,
    )
    return "open"


def open_breakers(conn: Connection) -> list[dict[str, Any]]:
    """For stats: every breaker that is not closed."""
    rows = conn.execute(
        select(*CircuitBreaker.__table__.c)
        .where(CircuitBreaker.state != "closed")
        .order_by(CircuitBreaker.name)
    )
    return [
        {
            "name": r.name,
            "state": r.state,
            "consecutive_failures": r.consecutive_failures,
            "opened_at": r.opened_at,
            "retry_at": r.retry_at,
            "trial_task_id": r.trial_task_id,
        }
        for r in rows
    ]


def breaker_state(conn: Connection, name: str) -> str:
    state = conn.execute(
        select(CircuitBreaker.state).where(CircuitBreaker.name == name)
    ).scalar_one_or_none()
    return state or "closed"
