"""Flow controls on the enqueue path: idempotency, debounce, rate limits, budgets.

``jobs/enqueue.py`` calls two things here: ``attach`` when it validates a call (the
options ``idempotency_key``, ``debounce``, ``debounce_key`` and the task's declared
``ledger_rate_limit``), and ``admit`` inside the enqueue transaction, before the rows
are written. ``admit`` runs, in order:

1. ``jobs.idempotency``: a call whose key is taken answers with the holder's id and
   writes nothing;
2. ``jobs.debounce``: earlier queued tasks of a debounce key end ``skipped``;
3. ``jobs.ratelimit``: each rate-limited task is scheduled at its key's next free slot;
4. ``jobs.budgets``: a session over budget holds its new tasks (or refuses them).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from jobs import budgets, debounce, errors, idempotency, ratelimit

if TYPE_CHECKING:
    from jobs.enqueue import TaskSpec

OPTIONS = frozenset({"idempotency_key", "debounce", "debounce_key"})


@dataclass(frozen=True, kw_only=True)
class FlowControls:
    """What a validated call asks of the flow controls (``TaskSpec.flow``)."""

    idempotency_key: str | None = None  # as stored: scoped to the owner
    rate: ratelimit.Rate | None = None
    rate_key: str | None = None
    debounce_s: float | None = None
    debounce_key: str | None = None


def columns(flow: FlowControls | None) -> dict[str, Any]:
    """The ``tasks`` columns a spec's flow controls fill in (every row has all three)."""
    if flow is None:
        return {"idempotency_key": None, "rate_key": None, "debounce_key": None}
    return {
        "idempotency_key": flow.idempotency_key,
        "rate_key": flow.rate_key,
        "debounce_key": flow.debounce_key,
    }


def pop_options(options: dict[str, Any]) -> dict[str, Any]:
    """Take the flow-control options out of an ``apply_async`` option dict."""
    return {key: options.pop(key) for key in list(options) if key in OPTIONS}


def attach(task: Any, spec: TaskSpec, options: dict[str, Any]) -> TaskSpec:
    """The spec with its flow controls checked and resolved (InvalidOption on bad input)."""
    key = options.get("idempotency_key")
    seconds = options.get("debounce")
    if options.get("debounce_key") is not None and seconds is None:
        raise errors.InvalidOption("debounce_key needs debounce=SECONDS")
    limited = ratelimit.key_for(
        task, session_id=spec.session_id, args=spec.args, kwargs=spec.kwargs
    )
    if key is None and seconds is None and limited is None:
        return spec
    flow = FlowControls(
        idempotency_key=None
        if key is None
        else idempotency.stored_key(idempotency.check_key(key), spec.user_id),
        rate=None if limited is None else limited[0],
        rate_key=None if limited is None else limited[1],
        debounce_s=None if seconds is None else debounce.check_seconds(seconds),
        debounce_key=None
        if seconds is None
        else debounce.key_for(spec.name, spec.session_id, options.get("debounce_key")),
    )
    return replace(spec, flow=flow)


def admit(
    conn: Connection, specs: Sequence[TaskSpec], now: datetime
) -> tuple[list[TaskSpec], list[uuid.UUID]]:
    """The specs to write (some dropped, rescheduled or held) and each call's task id."""
    if not any(s.flow is not None or s.session_id for s in specs):
        return list(specs), [s.id for s in specs]
    to_write, ids = idempotency.resolve(conn, specs, now)
    to_write = debounce.supersede(conn, to_write, now)
    to_write = ratelimit.plan(conn, to_write, now)
    to_write = budgets.admit(conn, to_write, now)
    return to_write, ids
