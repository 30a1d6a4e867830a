"""The pull API for agents (seed 004): take a task, keep its lease, report how it ended.

An agent that does not consume Celery messages asks for work instead::

    attempt = pull.take(agent_id="agent-7", queue="agents")      # None when nothing is due
    pull.heartbeat(attempt.id, agent_id="agent-7", attempt=attempt.attempt)
    pull.complete(app, attempt.id, agent_id="agent-7", attempt=attempt.attempt, result={...})
    pull.fail(app, attempt.id, agent_id="agent-7", attempt=attempt.attempt, error="...")

``take`` is ``execution.dequeue``: the row moves ``queued`` -> ``running`` with a lease by
the same conditional UPDATE the workers use, and concurrent pullers skip each other's
locked rows, so no task is handed out twice. Every later call is fenced by the attempt
number: a puller whose lease ran out (its task was reaped and handed on) cannot
heartbeat, complete or fail the newer attempt. An agent that stops heartbeating loses
the task when the lease ends: the lease reaper fails the attempt as ``worker_lost`` and
the retry rules put it back in the queue. ``agents`` shows each agent's last pull.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs import errors, execution
from jobs.dispatch import Dispatch
from jobs.enqueue import publish_quietly
from jobs.retry import RetryPolicy
from models import AgentPull, Outcome, Task, TaskState, Verification, utcnow
from models.db import transaction
from models.settings import get_settings


class StaleAttempt(errors.InvalidTransition):
    """This attempt no longer owns the task: its lease ran out and the task moved on."""


def _check_agent(agent_id: Any) -> str:
    if not isinstance(agent_id, str) or not agent_id.strip() or len(agent_id) > 300:
        raise errors.InvalidOption("agent_id must be a non-empty string of at most 300 characters")
    return agent_id


def take(
    *,
    agent_id: str,
    session_id: str | None = None,
    name: str | None = None,
    lease_s: float | None = None,
) -> execution.Attempt | None:
    """The most urgent due task (optionally of one session or task name), now running
    under this agent with a lease; None when there is nothing to do."""
    _check_agent(agent_id)
    settings = get_settings()
    lease = lease_s or settings.lease_seconds
    now = utcnow()
    with transaction() as conn:
        attempt = execution.dequeue(
            conn, worker_id=agent_id, lease_s=lease, now=now, session_id=session_id, name=name
        )
        stmt = pg_insert(AgentPull).values(
            agent_id=agent_id,
            last_pull_at=now,
            last_task_id=None if attempt is None else attempt.id,
            pulls=1,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[AgentPull.agent_id],
                set_={
                    "last_pull_at": now,
                    "last_task_id": stmt.excluded.last_task_id,
                    "pulls": AgentPull.pulls + 1,
                },
            )
        )
    return attempt


def _owned_attempt(
    conn: Connection, task_id: uuid.UUID, agent_id: str, attempt: int
) -> execution.Attempt:
    row = conn.execute(
        select(*Task.__table__.c).where(Task.id == task_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise errors.NotFound(f"no task {task_id}")
    if row.state is not TaskState.RUNNING or row.attempts != attempt or row.worker_id != agent_id:
        raise StaleAttempt(
            f"attempt {attempt} of task {task_id} by {agent_id} is stale: the task is "
            f"{row.state} at attempt {row.attempts} (worker {row.worker_id})"
        )
    return execution.Attempt.from_row(row)


def heartbeat(
    task_id: uuid.UUID, *, agent_id: str, attempt: int, lease_s: float | None = None
) -> None:
    """Extend this attempt's lease; ``StaleAttempt`` if it no longer owns the task."""
    _check_agent(agent_id)
    lease = lease_s or get_settings().lease_seconds
    with transaction() as conn:
        now = utcnow()
        moved = conn.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.state == TaskState.RUNNING,
                Task.attempts == attempt,
                Task.worker_id == agent_id,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease))
            .returning(Task.id)
        ).first()
        if moved is None:
            _owned_attempt(conn, task_id, agent_id, attempt)  # raises the reason


def complete(
    app: Any, task_id: uuid.UUID, *, agent_id: str, attempt: int, result: Any = None
) -> None:
    """running -> completed for this attempt (``StaleAttempt`` if it lost the task)."""
    _check_agent(agent_id)
    from jobs.enqueue import _check_json  # the same plain-JSON rule as arguments

    _check_json("result", result)
    settings = get_settings()
    with transaction() as conn:
        owned = _owned_attempt(conn, task_id, agent_id, attempt)
        dispatches = execution.complete(
            conn,
            owned,
            result=result,
            verification=Verification.UNVERIFIED,
            now=utcnow(),
            default_window=settings.session_concurrency,
        )
        if dispatches is None:
            raise StaleAttempt(f"attempt {attempt} of task {task_id} is stale")
    publish_quietly(app, dispatches, settings)


def fail(
    app: Any,
    task_id: uuid.UUID,
    *,
    agent_id: str,
    attempt: int,
    error: str,
    permanent: bool = False,
) -> TaskState:
    """running -> retry_wait or failed, by the same retry rules as a worker's failure."""
    _check_agent(agent_id)
    settings = get_settings()
    with transaction() as conn:
        owned = _owned_attempt(conn, task_id, agent_id, attempt)
        dispatches: list[Dispatch] | None = execution.fail(
            conn,
            owned,
            outcome=Outcome.PERMANENT if permanent else Outcome.ERROR,
            error=str(error),
            policy=_retry_policy(app, owned.name),
            now=utcnow(),
            default_window=settings.session_concurrency,
        )
        if dispatches is None:
            raise StaleAttempt(f"attempt {attempt} of task {task_id} is stale")
        state = conn.execute(select(Task.state).where(Task.id == task_id)).scalar_one()
    publish_quietly(app, dispatches, settings)
    return TaskState(state)


def _retry_policy(app: Any, name: str) -> RetryPolicy:
    task = app.tasks.get(name) if app is not None else None
    if task is not None and hasattr(task, "retry_policy"):
        policy: RetryPolicy = task.retry_policy()
        return policy
    s = get_settings()
    return RetryPolicy(
        base_s=s.retry_base_seconds, cap_s=s.retry_cap_seconds, jitter=s.retry_jitter
    )


def agents(conn: Connection) -> list[dict[str, Any]]:
    """Each pulling agent's last pull and what it holds now (stats: absent agents stand out)."""
    holding = dict(
        conn.execute(
            select(Task.worker_id, Task.id).where(
                Task.state == TaskState.RUNNING, Task.worker_id.in_(select(AgentPull.agent_id))
            )
        ).all()
    )
    return [
        {
            "agent_id": r.agent_id,
            "last_pull_at": r.last_pull_at,
            "last_task_id": r.last_task_id,
            "pulls": r.pulls,
            "running": holding.get(r.agent_id),
        }
        for r in conn.execute(
            select(*AgentPull.__table__.c).order_by(AgentPull.last_pull_at.desc())
        )
    ]
