"""What holds a queued task back: a paused session, a paused queue, an open circuit breaker.

A held task stays ``queued``. The dispatch window does not publish it, and the claim
refuses it even when its message is already in Redis (the claim also clears its
``dispatched_at``, so the dispatch sweep publishes it again once the hold is lifted).
These are the SQL pieces ``jobs/dispatch.py`` and the claim in ``jobs/transitions.py``
add to their statements; nothing here writes on its own.

Circuit breaker: ``closed`` runs; ``open`` holds until ``retry_at`` (the cool-down), then
the first claim turns it ``half_open`` as the one trial; ``half_open`` holds everything
else until the trial ends (or, if the trial is lost, until its ``retry_at``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select

from models import AgentSession, CircuitBreaker, QueuePause, Task


def runnable(now: datetime) -> list[Any]:
    """WHERE clauses on ``tasks``: nothing holds the row back (dispatch and dequeue).

    A breaker's cool-down is read on the database's clock, whatever ``now`` the caller
    has: ``retry_at`` is written with it, and a worker's clock may be off by seconds."""
    return [
        ~exists(
            select(AgentSession.id).where(
                AgentSession.id == Task.session_id, AgentSession.paused.is_(True)
            )
        ),
        ~exists(select(QueuePause.queue).where(QueuePause.queue == Task.queue)),
        ~exists(
            select(CircuitBreaker.name).where(
                CircuitBreaker.name == Task.name,
                CircuitBreaker.state != "closed",
                or_(CircuitBreaker.retry_at.is_(None), CircuitBreaker.retry_at > func.now()),
            )
        ),
    ]


# -- the claim (raw SQL, psycopg placeholders %(id)s and %(now)s) ------------------------------

_PAUSED_SQL = """(
    EXISTS (SELECT 1 FROM agent_sessions s WHERE s.id = tasks.session_id AND s.paused)
    OR EXISTS (SELECT 1 FROM queue_pauses q WHERE q.queue = tasks.queue))"""
_BREAKER_NOT_CLOSED_SQL = """EXISTS (
    SELECT 1 FROM circuit_breakers b WHERE b.name = tasks.name AND b.state <> 'closed')"""

# CTEs to put first in the claim's WITH: an open breaker whose cool-down is over lets this
# one claim through as its trial (half-open), and says so in the audit trail. The row lock
# on the breaker makes a second claimer at the same instant see it half-open and wait.
# ``retry_at`` is on the database's clock (``breaker.record_failure``, the dispatch sweep):
# compared with a worker's clock, a skew of seconds held every trial back that long.
CLAIM_GATE_CTES = f"""
    gate AS (
        UPDATE circuit_breakers
           SET state = 'half_open', trial_task_id = %(id)s, updated_at = %(now)s,
               retry_at = now() + make_interval(secs => tasks.timeout_s + 60)
          FROM tasks
         WHERE tasks.id = %(id)s AND tasks.state = 'queued' AND NOT {_PAUSED_SQL}
           AND circuit_breakers.name = tasks.name AND circuit_breakers.state <> 'closed'
           AND circuit_breakers.retry_at <= now()
     RETURNING circuit_breakers.name
    ), gate_event AS (
        INSERT INTO task_events (task_id, goal_id, event_type, payload, created_at)
        SELECT %(id)s, NULL, 'breaker_half_open',
               jsonb_build_object('name', name, 'trial_task_id', %(id)s::text), %(now)s
          FROM gate
    ),"""

# The claim's extra WHERE (the task is not held) ...
CLAIM_RUNNABLE_SQL = f"""NOT {_PAUSED_SQL}
           AND (NOT {_BREAKER_NOT_CLOSED_SQL} OR EXISTS (SELECT 1 FROM gate))"""

# The claim's fast path (``jobs/transitions._FAST_CLAIM_SQL``): nothing holds the row, so the
# gate and held CTEs above would write nothing. Three index probes on small tables instead of
# four data-modifying CTEs, which all run (and open their tables and indexes) even when idle.
CLAIM_NOTHING_HOLDS_SQL = f"""NOT {_PAUSED_SQL}
           AND NOT {_BREAKER_NOT_CLOSED_SQL}"""

# ... and a CTE for the held case: un-mark the message, so it is published again later.
CLAIM_HELD_CTE = f"""
    held AS (
        UPDATE tasks SET dispatched_at = NULL
         WHERE id = %(id)s AND state = 'queued'
           AND ({_PAUSED_SQL}
                OR ({_BREAKER_NOT_CLOSED_SQL} AND NOT EXISTS (SELECT 1 FROM gate)))
     RETURNING id
    ),"""


# A success closes the breaker and resets its count, inside the completion statement
# (``jobs/transitions._COMPLETE_SQL``: its ``moved`` CTE returns ``name``). Only a row that
# counted failures or was not closed is touched, so the usual completion writes nothing here.
COMPLETE_BREAKER_CTES = """, breaker AS (
        UPDATE circuit_breakers b
           SET state = 'closed', consecutive_failures = 0, retry_at = NULL,
               trial_task_id = NULL, updated_at = %(now)s
          FROM moved, circuit_breakers old
         WHERE b.name = moved.name AND old.name = b.name
           AND (b.consecutive_failures > 0 OR b.state <> 'closed')
     RETURNING b.name, old.state AS was, moved.id AS task_id
    ), breaker_event AS (
        INSERT INTO task_events (task_id, goal_id, event_type, payload, created_at)
        SELECT task_id, NULL, 'breaker_closed', jsonb_build_object('name', name, 'was', was),
               %(now)s
          FROM breaker WHERE was <> 'closed'
    )"""
