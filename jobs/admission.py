"""What an enqueue must pass before its rows are written: owner, caps, policy.

``create`` is the enqueue path's one hook (``jobs/enqueue.py`` calls it in the
enqueue transaction): it fills in each task's owner from its session, refuses a
batch that would overflow a session or queue cap (``QueueFull``, nothing written),
applies the policy (redacting fields before anything is stored), inserts the rows
and records each policy decision as an audit event. A blocked task is recorded as
failed in a transaction of its own and the enqueue raises ``PolicyBlocked``.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Row, func, select

from jobs import policy
from jobs.errors import PolicyBlocked, QueueFull
from jobs.policy_rules import Action, Decision, Rule
from jobs.transitions import create_tasks, write_events
from models import AgentSession, Task, TaskState
from models.db import transaction
from models.settings import get_settings
from models.states import FINAL_TASK_STATES

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

log = logging.getLogger(__name__)
UNFINISHED = [s for s in TaskState if s not in FINAL_TASK_STATES]


@dataclass(frozen=True)
class _EventRow:
    """What ``write_events`` reads of a row."""

    id: uuid.UUID
    goal_id: uuid.UUID | None


def create(conn: Connection, specs: Sequence[TaskSpec], now: datetime) -> list[TaskSpec]:
    """Admit and insert ``specs``; return them as written (owners set, fields redacted)."""
    specs = with_owners(conn, specs)
    check_caps(conn, specs)
    rule_set = policy.rules()
    if not rule_set:
        create_tasks(conn, [spec.row(now) for spec in specs], now)
        return list(specs)
    decided = [(spec, decide(spec, rule_set)) for spec in specs]
    blocked = [(spec, d) for spec, d in decided if d.action is Action.BLOCK]
    if blocked:
        record_blocked(blocked, now)
        names = ", ".join(sorted({str(d.rule_name) for _, d in blocked}))
        reasons = "; ".join(sorted({d.rule.reason for _, d in blocked if d.rule and d.rule.reason}))
        raise PolicyBlocked(
            f"blocked by policy rule {names}"
            + (f": {reasons}" if reasons else "")
            + f"; recorded as failed: {', '.join(str(s.id) for s, _ in blocked)}"
            + ("" if len(blocked) == len(specs) else "; nothing else of this batch was enqueued"),
            task_ids=[str(s.id) for s, _ in blocked],
            rule=names,
        )
    admitted = [apply(spec, d) for spec, d in decided]
    create_tasks(conn, [spec.row(now) for spec in admitted], now)
    payloads = {spec.id: _event_payload(spec) for spec in admitted}
    write_events(
        conn,
        cast(list[Row[Any]], [_EventRow(spec.id, spec.goal_id) for spec in admitted]),
        lambda row: [("policy_decision", payloads[row.id])],
        now,
    )
    return admitted


def with_owners(conn: Connection, specs: Sequence[TaskSpec]) -> list[TaskSpec]:
    """A task without ``user_id`` belongs to its session's owner."""
    sessions = {s.session_id for s in specs if s.session_id and s.user_id is None}
    if not sessions:
        return list(specs)
    owners = dict(
        conn.execute(
            select(AgentSession.id, AgentSession.user_id).where(
                AgentSession.id.in_(sessions), AgentSession.user_id.is_not(None)
            )
        ).all()
    )
    if not owners:
        return list(specs)
    return [
        replace(s, user_id=owners[s.session_id])
        if s.user_id is None and s.session_id in owners
        else s
        for s in specs
    ]


def check_caps(conn: Connection, specs: Sequence[TaskSpec]) -> None:
    """Seed 004's queue overflow: at most N unfinished tasks per session and per queue."""
    settings = get_settings()
    for column, cap, what in (
        (Task.session_id, settings.max_unfinished_per_session, "session"),
        (Task.queue, settings.max_unfinished_per_queue, "queue"),
    ):
        if cap is None:
            continue
        adding: dict[str, int] = {}
        for spec in specs:
            key = spec.session_id if what == "session" else spec.queue
            if key is not None and spec.state not in FINAL_TASK_STATES:
                adding[key] = adding.get(key, 0) + 1
        for key in sorted(adding):
            # Two producers must not both see room for the last slot.
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"tl-cap:{what}:{key}"))))
            have = int(
                conn.execute(
                    select(func.count()).where(column == key, Task.state.in_(UNFINISHED))
                ).scalar_one()
            )
            if have + adding[key] > cap:
                raise QueueFull(
                    f"{what} {key!r} has {have} unfinished task(s); adding {adding[key]} would "
                    f"pass its cap of {cap} (TASKLEDGER_MAX_UNFINISHED_PER_{what.upper()}). "
                    "Nothing was enqueued; retry later."
                )


def positional_params(name: str) -> list[str]:
    """The task's parameter names, so a rule on ``amount`` sees it passed by position too."""
    from celery import current_app

    task = current_app.tasks.get(name)
    if task is None:
        return []
    try:
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def decide(spec: TaskSpec, rule_set: Sequence[Rule] | None = None) -> Decision:
    return policy.decide(
        name=spec.name,
        args=spec.args,
        kwargs=spec.kwargs,
        session_id=spec.session_id,
        user_id=spec.user_id,
        params=positional_params(spec.name),
        rule_set=rule_set,
    )


def apply(spec: TaskSpec, decision: Decision, *, approved: bool = False) -> TaskSpec:
    """The spec as the decision wants it stored (never a block: that is recorded apart)."""
    if decision.action is Action.REDACT and decision.rule is not None:
        args, kwargs, found = policy.redact(
            spec.args, spec.kwargs, decision.rule.fields, positional_params(spec.name)
        )
        decision = Decision(action=decision.action, rule=decision.rule, redacted=found)
        spec = replace(spec, args=args, kwargs=kwargs)
    if decision.action is Action.REQUIRE_APPROVAL and not approved:
        spec = replace(spec, state=TaskState.PENDING_APPROVAL)
    return replace(spec, policy_decision=decision.record())


def _event_payload(spec: TaskSpec) -> Mapping[str, Any]:
    return {**(spec.policy_decision or {}), "state": str(spec.state)}


def record_blocked(blocked: Sequence[tuple[TaskSpec, Decision]], now: datetime) -> None:
    """Write blocked tasks as failed, in their own transaction: the enqueue that asked for
    them raises, and its transaction (a batch, a goal) rolls back without them."""
    rows = []
    for spec, decision in blocked:
        reason = decision.rule.reason if decision.rule and decision.rule.reason else "blocked"
        row = replace(spec, goal_id=None, step_index=None).row(now)
        row.update(
            state=TaskState.FAILED,
            policy_decision=decision.record(),
            last_error=f"blocked by policy rule {decision.rule_name}: {reason}",
            last_outcome="blocked",
            finished_at=now,
            dispatched_at=None,
            dispatch_count=0,
        )
        if spec.goal_id is not None:
            row["metadata"] = {**row["metadata"], "goal_id": str(spec.goal_id)}
        rows.append(row)
    with transaction() as conn:
        create_tasks(conn, rows, now)
        payloads = {r["id"]: {**r["policy_decision"], "state": "failed"} for r in rows}
        write_events(
            conn,
            cast(list[Row[Any]], [_EventRow(r["id"], None) for r in rows]),
            lambda r: [("policy_decision", payloads[r.id])],
            now,
        )
    log.warning("policy blocked %d task(s): %s", len(rows), [str(r["id"]) for r in rows])
