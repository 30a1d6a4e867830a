"""Per-session budgets: tokens, cost and task count, with what happens once over.

    budgets.set_budget(conn, "agent-7", max_tokens=50_000, max_cost=2.0, max_tasks=100,
                       on_exceed="approval")   # or "block"

Handlers report what they used: ``current_context().charge(tokens=1200, cost=0.004)``;
the spend adds up on the session's row (``session_budgets``) in its own small
transaction, with a ``usage_charged`` event on the task. A session that charges
without a budget gets a row with no limits, so its spend still shows.

At enqueue (``admit``, inside the enqueue transaction, the session's row locked) a
session at or over any of its limits holds each new task ``pending_approval``
(``on_exceed="approval"``: a person decides, as with a policy rule; the audit trail
gets a ``budget_exceeded`` event) or refuses the enqueue (``"block"``:
``BudgetExceeded``, nothing written). ``max_tasks`` counts the tasks admitted since
the budget was set; held ones do not count. Budgets and spend show in
``jobs.sessions.list_sessions`` (``budget``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs import errors
from jobs.transitions import record_event, write_events
from models import SessionBudget, TaskState, utcnow
from models.db import transaction

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

ON_EXCEED = ("approval", "block")
UNSET: Any = object()  # set_budget: leave this limit as it is


class BudgetExceeded(errors.QueueFull):
    """The session is over its budget and its budget says block: nothing was written."""


def _limit(what: str, value: Any, *, integer: bool) -> Any:
    if value is None or value is UNSET:
        return value
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        raise errors.InvalidOption(f"{what} must be a number >= 0 (or None: no limit)")
    if not integer and not math.isfinite(value):
        raise errors.InvalidOption(f"{what} must be finite")
    return value


def set_budget(
    conn: Connection,
    session_id: str,
    *,
    max_tokens: int | None = UNSET,
    max_cost: float | None = UNSET,
    max_tasks: int | None = UNSET,
    on_exceed: str | None = None,
    reset_spend: bool = False,
) -> Row[Any]:
    """Create or change a session's budget; only the given fields change (None: no limit)."""
    if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > 200:
        raise errors.InvalidOption("session_id must be a non-empty string of at most 200 chars")
    if on_exceed is not None and on_exceed not in ON_EXCEED:
        raise errors.InvalidOption(f"on_exceed must be 'approval' or 'block'; got {on_exceed!r}")
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    for column, value, integer in (
        ("max_tokens", max_tokens, True),
        ("max_cost", max_cost, False),
        ("max_tasks", max_tasks, True),
    ):
        if value is not UNSET:
            values[column] = _limit(column, value, integer=integer)
    if on_exceed is not None:
        values["on_exceed"] = on_exceed
    if reset_spend:
        values.update(tokens_used=0, cost_used=0.0, tasks_used=0)
    stmt = pg_insert(SessionBudget).values(session_id=session_id, created_at=now, **values)
    stmt = stmt.on_conflict_do_update(index_elements=[SessionBudget.session_id], set_=values)
    row = conn.execute(stmt.returning(*SessionBudget.__table__.c)).one()
    record_event(conn, "budget_set", {"session_id": session_id, **_public(values)}, now=now)
    return row


def _public(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "updated_at"}


def get_budget(conn: Connection, session_id: str) -> Row[Any] | None:
    return conn.execute(
        select(*SessionBudget.__table__.c).where(SessionBudget.session_id == session_id)
    ).one_or_none()


def describe(row: Any) -> dict[str, Any]:
    """A budget row as stats, the API and the monitor show it."""
    return {
        "max_tokens": row.max_tokens,
        "max_cost": row.max_cost,
        "max_tasks": row.max_tasks,
        "on_exceed": row.on_exceed,
        "tokens_used": int(row.tokens_used),
        "cost_used": float(row.cost_used),
        "tasks_used": int(row.tasks_used),
        "exceeded": over(row, adding=0) is not None,
    }


def all_budgets(conn: Connection, session_ids: Sequence[str] | None = None) -> dict[str, Any]:
    stmt = select(*SessionBudget.__table__.c)
    if session_ids is not None:
        stmt = stmt.where(SessionBudget.session_id.in_(list(session_ids)))
    return {row.session_id: describe(row) for row in conn.execute(stmt)}


def over(row: Any, *, adding: int = 1, tasks_used: int | None = None) -> str | None:
    """Why the session may not start ``adding`` more tasks, or None."""
    tasks_used = row.tasks_used if tasks_used is None else tasks_used
    if row.max_tokens is not None and row.tokens_used >= row.max_tokens:
        return f"tokens used {row.tokens_used} of {row.max_tokens}"
    if row.max_cost is not None and row.cost_used >= row.max_cost:
        return f"cost used {row.cost_used:g} of {row.max_cost:g}"
    if row.max_tasks is not None and tasks_used + adding > row.max_tasks:
        return f"tasks used {tasks_used} of {row.max_tasks}"
    return None


def admit(conn: Connection, specs: Sequence[TaskSpec], now: datetime) -> list[TaskSpec]:
    """Count new tasks against their sessions' budgets; hold or refuse what is over."""
    sessions = sorted({s.session_id for s in specs if s.session_id and _counts(s)})
    if not sessions:
        return list(specs)
    rows = {
        row.session_id: row
        for row in conn.execute(
            select(*SessionBudget.__table__.c)
            .where(SessionBudget.session_id.in_(sessions))
            .order_by(SessionBudget.session_id)
            .with_for_update()  # two producers must not both take the last task
        )
    }
    if not rows:
        return list(specs)
    used = {sid: int(row.tasks_used) for sid, row in rows.items()}
    held: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    out = []
    for spec in specs:
        row = rows.get(spec.session_id or "")
        if row is None or not _counts(spec):
            out.append(spec)
            continue
        sid = row.session_id
        reason = over(row, tasks_used=used[sid])
        if reason is None:
            used[sid] += 1
            out.append(spec)
            continue
        if row.on_exceed == "block":
            raise BudgetExceeded(
                f"session {sid!r} is over its budget ({reason}); nothing was enqueued. "
                "Raise it with jobs.budgets.set_budget."
            )
        reasons[sid] = reason
        held.setdefault(sid, []).append(str(spec.id))
        out.append(
            replace(
                spec,
                state=TaskState.PENDING_APPROVAL,
                policy_decision={
                    "action": "require_approval",
                    "rule": "budget",
                    "reason": f"session over budget: {reason}",
                },
            )
        )
    for sid, count in used.items():
        if count != rows[sid].tasks_used:
            conn.execute(
                update(SessionBudget)
                .where(SessionBudget.session_id == sid)
                .values(tasks_used=count, updated_at=now)
            )
    for sid, ids in held.items():
        record_event(
            conn,
            "budget_exceeded",
            {"session_id": sid, "reason": reasons[sid], "held": ids},
            now=now,
        )
    return out


def _counts(spec: TaskSpec) -> bool:
    """New work that would run without a person: queued (goal steps wait as blocked)."""
    return spec.state is TaskState.QUEUED


def charge(
    task_id: uuid.UUID,
    session_id: str | None,
    *,
    tokens: int = 0,
    cost: float = 0.0,
    goal_id: uuid.UUID | None = None,
) -> None:
    """Add a running task's usage to its session's spend (its own transaction)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise errors.InvalidOption(f"tokens must be an integer >= 0; got {tokens!r}")
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
        raise errors.InvalidOption(f"cost must be a finite number; got {cost!r}")
    if cost < 0:
        raise errors.InvalidOption(f"cost must be >= 0; got {cost!r}")
    now = utcnow()
    with transaction() as conn:
        if session_id is not None:
            stmt = pg_insert(SessionBudget).values(
                session_id=session_id,
                tokens_used=tokens,
                cost_used=float(cost),
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[SessionBudget.session_id],
                    set_={
                        "tokens_used": SessionBudget.tokens_used + tokens,
                        "cost_used": SessionBudget.cost_used + float(cost),
                        "updated_at": now,
                    },
                )
            )
        write_events(
            conn,
            [cast(Row[Any], _TaskRef(task_id, goal_id))],
            [("usage_charged", {"tokens": tokens, "cost": float(cost)})],
            now,
        )


class _TaskRef:
    """What ``write_events`` reads of a row."""

    def __init__(self, task_id: uuid.UUID, goal_id: uuid.UUID | None) -> None:
        self.id = task_id
        self.goal_id = goal_id
