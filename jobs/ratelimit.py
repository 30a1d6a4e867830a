"""Rate limits: at most N starts of a key in any window of a period, cluster-wide.

Declared on the task (``@app.task(base=DurableTask, ledger_rate_limit="5/s")``) or in
``TASKLEDGER_RATE_LIMITS`` (``"name=5/s,other=100/m@session"``, which wins). The key is
the task name, the task name per session (``ledger_rate_key="session"``, or ``@session``
in the setting), or the task name plus whatever ``ledger_rate_key(*args, **kwargs)``
returns.

Two halves, both in Postgres (so a restart forgets nothing):

- The claim enforces it exactly. ``rate_limits.starts`` keeps the last N start times of
  the key (a sliding-window log); the claim statement (``jobs/transitions._CLAIM_SQL``)
  starts the task only if the oldest of them is at least a period old, and appends the
  start in the same statement, with the same clock that stamps ``tasks.started_at``. So
  no window of one period ever holds more than N starts, whatever the workers' timing.
  A task over the limit is not failed: it stays ``queued`` with ``scheduled_for`` moved
  to when a start frees up, and the dispatch sweep publishes it then.
- The enqueue spreads the work (``plan``): each new task's ``scheduled_for`` is the
  earliest time the log and the key's queued backlog leave for it, so a burst of 1,000
  is published in order, N per period, not all at once to be turned back at the claim.

Why not Celery's ``rate_limit``: that one is a token bucket inside each worker process
pool (N workers run N times the rate, a restart forgets it, and the held message sits
reserved in the worker). It still works as Celery documents; ``ledger_rate_limit`` is
the cluster-wide, durable one.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobs import errors
from models import RateLimit, Task, TaskState
from models.db import transaction
from models.flow import KEY_LIMIT
from models.settings import get_settings

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

T = TypeVar("T")
UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|m|min|h|hour)\s*$")


@dataclass(frozen=True)
class Rate:
    max_starts: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.max_starts}/{self.period_s:g}s"


def parse_rate(text: Any) -> Rate:
    """``"5/s"``, ``"100/m"``, ``"10/h"``, ``"3/10s"``: N starts per period."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise errors.InvalidOption(
            f"a rate limit is N/period such as '5/s', '100/m', '10/h' or '3/10s'; got {text!r}"
        )
    count, every, unit = int(match[1]), float(match[2] or 1), UNITS[match[3]]
    if count < 1 or every <= 0:
        raise errors.InvalidOption(f"a rate limit needs N >= 1 and a period > 0; got {text!r}")
    return Rate(count, every * unit)


def configured(setting: str) -> dict[str, tuple[Rate, str]]:
    """``TASKLEDGER_RATE_LIMITS``: task name -> (rate, "task" or "session")."""
    out: dict[str, tuple[Rate, str]] = {}
    for entry in (e.strip() for e in setting.split(",")):
        if not entry:
            continue
        name, sep, rest = entry.partition("=")
        if not sep or not name.strip():
            raise errors.InvalidOption(
                f"TASKLEDGER_RATE_LIMITS entries are name=N/period[@session]; got {entry!r}"
            )
        rate, _, scope = rest.partition("@")
        if scope.strip() not in ("", "session"):
            raise errors.InvalidOption(f"TASKLEDGER_RATE_LIMITS: unknown scope in {entry!r}")
        out[name.strip()] = (parse_rate(rate), scope.strip() or "task")
    return out


def key_for(
    task: Any, *, session_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[Rate, str] | None:
    """The task's rate and the key this call counts against, or None (no limit)."""
    # From the class: a function set in the decorator would be bound to the task instance.
    how: Any = getattr(type(task), "ledger_rate_key", None)
    declared = configured(get_settings().rate_limits).get(task.name)
    if declared is not None:
        rate, scope = declared
        how = "session" if scope == "session" else how
    elif getattr(task, "ledger_rate_limit", None):
        rate = parse_rate(task.ledger_rate_limit)
    else:
        return None
    if how is None or how == "task":
        key = task.name
    elif how == "session":
        key = f"{task.name}|session:{session_id or '-'}"
    elif callable(how):
        value = how(*args, **kwargs)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise errors.InvalidOption(
                f"ledger_rate_key of {task.name} must return a string; got {value!r}"
            )
        key = f"{task.name}|{value}"
    else:
        raise errors.InvalidOption(
            f"ledger_rate_key of {task.name} is 'task', 'session' or a function of the "
            f"arguments; got {how!r}"
        )
    if len(key) > KEY_LIMIT:
        raise errors.InvalidOption(f"rate limit key of {task.name} is over {KEY_LIMIT} characters")
    return rate, key


def plan(conn: Connection, specs: Sequence[TaskSpec], now: datetime) -> list[TaskSpec]:
    """Give each rate-limited spec the earliest slot its key leaves (in call order)."""
    out = []
    ahead: dict[str, int] = {}  # this batch's earlier specs of a key
    for spec in specs:
        flow = spec.flow
        if flow is None or flow.rate is None or flow.rate_key is None:
            out.append(spec)
            continue
        starts = _register(conn, flow.rate_key, flow.rate, now)
        if flow.rate_key not in ahead:
            ahead[flow.rate_key] = _queued(conn, flow.rate_key)
        slot = earliest_slot(starts, flow.rate, now=now, ahead=ahead[flow.rate_key])
        ahead[flow.rate_key] += 1
        out.append(replace(spec, scheduled_for=max(spec.scheduled_for, slot)))
    return out


def earliest_slot(starts: Sequence[datetime], rate: Rate, *, now: datetime, ahead: int) -> datetime:
    """When the start after ``ahead`` waiting ones may happen, were each to start at once.

    The k-th future start must be a period after the start N places before it: one of
    the logged ones for k < N, else the k-N-th future start (rounds of a period).
    """
    n, period = rate.max_starts, timedelta(seconds=rate.period_s)
    logged = sorted(starts)[-n:]
    padded: list[datetime | None] = [None] * (n - len(logged)) + list(logged)
    rounds, index = divmod(ahead, n)
    oldest = padded[index]
    first = now if oldest is None else max(now, oldest + period)
    return first + period * rounds


def _register(conn: Connection, key: str, rate: Rate, now: datetime) -> list[datetime]:
    """Create or update the key's limit; lock its row (so enqueues of a key plan in turn)."""
    stmt = pg_insert(RateLimit).values(
        key=key, max_starts=rate.max_starts, period_s=rate.period_s, starts=[], updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[RateLimit.key],
        set_={"max_starts": rate.max_starts, "period_s": rate.period_s},
    )
    return list(conn.execute(stmt.returning(RateLimit.starts)).scalar_one() or [])


def _queued(conn: Connection, key: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(Task.rate_key == key, Task.state == TaskState.QUEUED)
        ).scalar_one()
    )


def status(conn: Connection, key: str | None = None) -> list[dict[str, Any]]:
    """Each key's limit, its recent starts and its waiting backlog (for stats and the CLI)."""
    stmt = select(RateLimit).order_by(RateLimit.key)
    if key is not None:
        stmt = stmt.where(RateLimit.key == key)
    out = []
    for row in conn.execute(stmt).scalars():
        out.append(
            {
                "key": row.key,
                "limit": str(Rate(row.max_starts, row.period_s)),
                "recent_starts": len(row.starts or []),
                "queued": _queued(conn, row.key),
            }
        )
    return out


# -- a worker turned back by the limit ----------------------------------------------------

# A claim the limit turned back whose start frees up within this many seconds waits for it
# in its worker and claims again: the dispatch sweep would add its interval (and its lag on
# a busy machine) to every round of starts, and the rate would drift below N per period.
WORKER_WAIT_S = 2.0
WORKER_TRIES = 5


def claim_when_due(task_id: uuid.UUID, claim: Callable[[], T | None]) -> T | None:
    """After ``claim`` found nothing: if the rate limit held the task and its start is
    near, wait for it here and claim again; else None (the dispatch sweep publishes it)."""
    for _ in range(WORKER_TRIES):
        wait_s = _take_back_message(task_id)
        if wait_s is None or wait_s > WORKER_WAIT_S:
            return None
        time.sleep(max(wait_s, 0.0))
        attempt = claim()
        if attempt is not None:
            return attempt
    return None


def _take_back_message(task_id: uuid.UUID) -> float | None:
    """Seconds until the held task's start frees up, marking its message as out again (this
    worker holds it), so the dispatch sweep does not publish a second one meanwhile."""
    with transaction() as conn:
        wait_s = conn.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.state == TaskState.QUEUED,
                Task.rate_key.is_not(None),
                Task.dispatched_at.is_(None),
                Task.scheduled_for < func.now() + timedelta(seconds=WORKER_WAIT_S),
            )
            .values(dispatched_at=func.now())
            .returning(func.extract("epoch", Task.scheduled_for - func.now()))
        ).scalar_one_or_none()
    return None if wait_s is None else float(wait_s)


# -- the claim's part (raw SQL inside jobs/transitions._CLAIM_SQL; %(id)s is the task) -------
# ``claimable`` is the rest of the claim's WHERE (not held, not expired), so a token is only
# taken by a claim that will start the task.


def claim_ctes(claimable: str) -> str:
    """``rate`` takes a start from the key's log when it has room; ``rate_held`` puts a task
    over its limit back (no message out, due when the oldest logged start is a period old)."""
    oldest = "r.starts[cardinality(r.starts) - r.max_starts + 1]"
    period = "r.period_s * interval '1 second'"
    return f"""
    rate AS (
        UPDATE rate_limits r
           SET starts = (r.starts || now())[greatest(cardinality(r.starts) + 2 - r.max_starts, 1):],
               updated_at = now()
          FROM tasks
         WHERE tasks.id = %(id)s AND tasks.state = 'queued' AND r.key = tasks.rate_key
           AND {claimable}
           AND (cardinality(r.starts) < r.max_starts OR {oldest} <= now() - {period})
     RETURNING r.key
    ), rate_held AS (
        UPDATE tasks
           SET dispatched_at = NULL,
               scheduled_for = greatest(tasks.scheduled_for, coalesce({oldest} + {period}, now()))
          FROM rate_limits r
         WHERE tasks.id = %(id)s AND tasks.state = 'queued' AND r.key = tasks.rate_key
           AND {claimable} AND NOT EXISTS (SELECT 1 FROM rate)
     RETURNING tasks.id
    ),"""


# The claim's extra WHERE: no limit, or the start was taken above.
CLAIM_ALLOWED_SQL = "(rate_key IS NULL OR EXISTS (SELECT 1 FROM rate))"
