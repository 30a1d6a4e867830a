"""The approval inbox (seed 002 11.2.5): tasks a policy rule held for a person.

``approve`` moves ``pending_approval`` -> ``queued`` (optionally with changed
arguments, validated like an enqueue and re-checked by the policy without asking
for approval again); ``deny`` -> ``cancelled``. Both are audited with who did it and
what changed. Approving or denying a task that is not pending is a clear error.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select, tuple_

from jobs import errors, policy
from jobs.admission import positional_params
from jobs.dispatch import Dispatch, release_rows
from jobs.enqueue import durable_task, prepare, publish_quietly
from jobs.execution import after_leaving_window
from jobs.policy_rules import Action, Decision
from jobs.transitions import move_task, move_tasks
from models import Task, TaskState, utcnow
from models.db import transaction
from models.settings import get_settings

MAX_PAGE = 500
EXPIRED = "approval_expired"


def _pending_row(conn: Connection, task_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(
        select(*Task.__table__.c).where(Task.id == task_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    if row.state is not TaskState.PENDING_APPROVAL:
        raise errors.NotPendingApproval(
            f"task {task_id} is {row.state}, not pending_approval: it was already "
            "approved, denied or never needed approval"
        )
    return row


def _check_by(by: Any) -> str:
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise errors.InvalidOption("`by` must name who decides (a non-empty string)")
    return by


def approve(
    app: Any,
    task_id: uuid.UUID,
    *,
    by: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Row[Any]:
    """pending_approval -> queued; a worker picks it up. Returns the queued row."""
    _check_by(by)
    settings = get_settings()
    now = utcnow()
    with transaction() as conn:
        row = _pending_row(conn, task_id)
        new_args = list(row.args) if args is None else args
        new_kwargs = dict(row.kwargs) if kwargs is None else kwargs
        # Validated exactly like an enqueue: signature, plain JSON, size.
        spec = prepare(
            durable_task(app, row.name),
            new_args,
            new_kwargs,
            task_id=row.id,
            now=now,
            queue=row.queue,
        )
        decision = policy.decide(
            name=row.name,
            args=spec.args,
            kwargs=spec.kwargs,
            session_id=row.session_id,
            user_id=row.user_id,
            params=positional_params(row.name),
        )
        if decision.action is Action.BLOCK:
            raise errors.PolicyBlocked(
                f"the changed arguments are blocked by policy rule {decision.rule_name}; "
                "the task is still pending approval",
                task_ids=[str(task_id)],
                rule=str(decision.rule_name),
            )
        final_args, final_kwargs = spec.args, spec.kwargs
        if decision.action is Action.REDACT and decision.rule is not None:
            final_args, final_kwargs, found = policy.redact(
                final_args, final_kwargs, decision.rule.fields, positional_params(row.name)
            )
            decision = Decision(action=decision.action, rule=decision.rule, redacted=found)
        changes = _diff(row.args, row.kwargs, final_args, final_kwargs)
        moved = move_task(
            conn,
            task_id,
            TaskState.QUEUED,
            sources=[TaskState.PENDING_APPROVAL],
            values={"args": final_args, "kwargs": final_kwargs, "dispatched_at": None},
            events=[
                (
                    "task_approved",
                    {"by": by, "changes": changes, "policy": decision.record()},
                )
            ],
            now=now,
        )
        assert moved is not None
        dispatches = release_rows(
            conn, [moved], now=now, default_window=settings.session_concurrency
        )
    publish_quietly(app, dispatches, settings)
    return moved


def deny(app: Any, task_id: uuid.UUID, *, by: str, reason: str = "") -> Row[Any]:
    """pending_approval -> cancelled, with who denied it and why."""
    _check_by(by)
    settings = get_settings()
    now = utcnow()
    with transaction() as conn:
        _pending_row(conn, task_id)
        row = move_task(
            conn,
            task_id,
            TaskState.CANCELLED,
            sources=[TaskState.PENDING_APPROVAL],
            values={"last_error": f"denied by {by}" + (f": {reason}" if reason else "")},
            events=[("task_denied", {"by": by, "reason": reason})],
            now=now,
        )
        assert row is not None
        dispatches = after_leaving_window(
            conn,
            session_id=row.session_id,
            goal_id=row.goal_id,
            now=now,
            default_window=settings.session_concurrency,
        )
    publish_quietly(app, dispatches, settings)
    return row


def _diff(
    old_args: list[Any], old_kwargs: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """What the approver changed: positions and keys, before and after."""
    out: dict[str, Any] = {}
    for i in range(max(len(old_args), len(args))):
        before = old_args[i] if i < len(old_args) else None
        after = args[i] if i < len(args) else None
        if i >= len(old_args) or i >= len(args) or before != after:
            out[f"args[{i}]"] = {"before": before, "after": after}
    for key in sorted(set(old_kwargs) | set(kwargs)):
        if old_kwargs.get(key, ...) != kwargs.get(key, ...):
            out[key] = {"before": old_kwargs.get(key), "after": kwargs.get(key)}
    return out


def _pending_where(user_id: str | None) -> list[Any]:
    where: list[Any] = [Task.state == TaskState.PENDING_APPROVAL]
    if user_id is not None:
        where.append(Task.user_id == user_id)
    return where


def list_pending(
    conn: Connection,
    *,
    user_id: str | None = None,
    limit: int = 50,
    cursor: str | uuid.UUID | None = None,
) -> list[Row[Any]]:
    """Pending approvals, newest first. ``cursor``: the id of the last row of the previous page."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise errors.InvalidOption(f"limit must be from 1 to {MAX_PAGE}; got {limit!r}")
    stmt = select(*Task.__table__.c).where(*_pending_where(user_id))
    if cursor is not None:
        try:
            after = cursor if isinstance(cursor, uuid.UUID) else uuid.UUID(str(cursor))
        except ValueError:
            raise errors.InvalidOption(f"cursor must be a task id; got {cursor!r}") from None
        mark = conn.execute(select(Task.created_at, Task.id).where(Task.id == after)).one_or_none()
        if mark is None:
            raise errors.InvalidOption(f"cursor {after} is not a task")
        stmt = stmt.where(tuple_(Task.created_at, Task.id) < tuple_(mark.created_at, mark.id))
    stmt = stmt.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    return list(conn.execute(stmt))


def pending_count(conn: Connection, *, user_id: str | None = None) -> int:
    """The monitor's badge."""
    return int(conn.execute(select(func.count()).where(*_pending_where(user_id))).scalar_one())


def expire(conn: Connection, now: datetime, *, older_than_s: float, batch: int) -> list[Row[Any]]:
    """Pending longer than ``older_than_s``: cancelled with reason ``approval_expired``."""
    cutoff = now - timedelta(seconds=older_than_s)
    ids = (
        select(Task.id)
        .where(Task.state == TaskState.PENDING_APPROVAL, Task.created_at < cutoff)
        .order_by(Task.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    found = list(conn.execute(ids).scalars())
    if not found:
        return []
    return move_tasks(
        conn,
        [Task.id.in_(found)],
        TaskState.CANCELLED,
        sources=[TaskState.PENDING_APPROVAL],
        values={"last_error": EXPIRED},
        events=[("task_cancelled", {"reason": EXPIRED, "after_s": older_than_s})],
        now=now,
    )


def expire_due(app: Any) -> int:
    """The sweep: expire what waited too long (no-op unless the expiry is configured)."""
    settings = get_settings()
    if settings.approval_expiry_seconds is None:
        return 0
    with transaction() as conn:
        rows = expire(
            conn,
            utcnow(),
            older_than_s=settings.approval_expiry_seconds,
            batch=settings.sweep_batch_size,
        )
        dispatches: list[Dispatch] = []
        for goal_id in {r.goal_id for r in rows if r.goal_id is not None}:
            dispatches += after_leaving_window(
                conn,
                session_id=None,
                goal_id=goal_id,
                now=utcnow(),
                default_window=settings.session_concurrency,
            )
    publish_quietly(app, dispatches, settings)
    return len(rows)
