"""What the MCP server asks of the ledger, as plain blocking functions over jobs/.

The MCP task id is the ledger task id. ``describe`` turns a task row into the
protocol-neutral ``TaskView`` that both MCP revisions render: the status
mapping (queued/running/retry_wait -> working, pending_approval ->
input_required, ...) lives here once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobs import errors, operations, queries
from jobs.enqueue import durable_task, is_durable
from jobs.enqueue import enqueue as enqueue_by_name
from jobs.waiting import wait_for_final
from models import TaskState, utcnow
from models.db import transaction
from models.settings import get_settings
from models.states import FINAL_TASK_STATES

# Where the MCP bookkeeping lives in tasks.metadata (the requested TTL, who asked).
META_KEY = "mcp"
# Request ``_meta`` keys a client may name an idempotency key with (jobs/idempotency.py).
IDEMPOTENCY_META_KEYS = ("taskledger/idempotency-key", "idempotencyKey")
POLL_INTERVAL_MS = 500

WORKING_STATES = frozenset(
    {TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRY_WAIT, TaskState.BLOCKED}
)


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who is calling: the ledger session their work runs in (and, over HTTP, the user)."""

    session_id: str
    user_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskView:
    """One ledger task as MCP sees it."""

    task_id: str
    name: str
    status: str  # working | input_required | completed | failed | cancelled
    status_message: str
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    result: Any = None
    error: str | None = None

    @property
    def final(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


def parse_id(raw: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise errors.NotFound(f"no task {raw!r}: task ids are UUIDs") from None


def enqueue(
    app: Any,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    caller: Caller,
    ttl_ms: int | None = None,
    mode: str,
    idempotency_key: str | None = None,
) -> uuid.UUID:
    """Create the ledger task for one ``tools/call``; return its id (the MCP task id). A
    call whose idempotency key is taken answers with the first call's task."""
    meta: dict[str, Any] = {"mode": mode}
    if ttl_ms is not None:
        meta["ttl_ms"] = int(ttl_ms)
    options: dict[str, Any] = {"session_id": caller.session_id, "metadata": {META_KEY: meta}}
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    if caller.user_id is not None:
        options["user_id"] = caller.user_id  # the owner: per-user scoping, as in the API
    handle = enqueue_by_name(app, tool, kwargs=dict(arguments), **options)
    return handle.uuid


def idempotency_key_of(meta: Mapping[str, Any] | None) -> str | None:
    """The idempotency key a request's ``_meta`` names, if any."""
    for key in IDEMPOTENCY_META_KEYS:
        value = (meta or {}).get(key)
        if value is not None:
            return str(value)
    return None


def load(task_id: uuid.UUID, caller: Caller | None = None) -> Any:
    """The task row; ``NotFound`` when it does not exist or belongs to another user."""
    with transaction() as conn:
        row = queries.get_task(conn, task_id)
    if caller is not None and caller.user_id is not None and row.user_id != caller.user_id:
        raise errors.NotFound(f"no task {task_id}")  # someone else's task: as if unknown
    if caller is not None and expired(row, utcnow()):
        raise errors.NotFound(f"no task {task_id}: its requested ttl has passed")
    return row


def expired(row: Any, now: datetime) -> bool:
    """A finished task whose requested TTL (from its creation, as MCP counts it) has passed
    is no longer served over MCP. The ledger row stays until retention removes it (the API
    and the audit trail still show it)."""
    ttl_ms = _meta(row).get("ttl_ms")
    if not isinstance(ttl_ms, int) or TaskState(row.state) not in FINAL_TASK_STATES:
        return False
    return bool(now > row.created_at + timedelta(milliseconds=ttl_ms))


def list_for(caller: Caller, *, limit: int = 100, offset: int = 0) -> list[Any]:
    """The caller's tasks, newest first: those of their session."""
    with transaction() as conn:
        rows = queries.list_tasks(conn, session_id=caller.session_id, limit=limit, offset=offset)
    if caller.user_id is not None:
        rows = [r for r in rows if r.user_id == caller.user_id]
    now = utcnow()
    return [r for r in rows if not expired(r, now)]


def cancel(app: Any, task_id: uuid.UUID, *, reason: str) -> None:
    """Cancel the row (running code gets its signal). A final task stays as it is."""
    with contextlib.suppress(errors.InvalidTransition):
        operations.cancel_task(app, task_id, reason=reason)


def wait(task_id: uuid.UUID, timeout_s: float) -> Any | None:
    """The final row, or None if it is not final within ``timeout_s``."""
    try:
        return wait_for_final(task_id, timeout_s)
    except errors.TaskTimeout:
        return None


def describe(row: Any, *, now: datetime | None = None) -> TaskView:
    state = TaskState(row.state)
    meta = _meta(row)
    return TaskView(
        task_id=str(row.id),
        name=row.name,
        status=_status(state),
        status_message=_message(row, state, now or utcnow()),
        created_at=row.created_at.isoformat(),
        last_updated_at=row.updated_at.isoformat(),
        ttl_ms=meta.get("ttl_ms"),
        result=row.result if state is TaskState.COMPLETED else None,
        error=row.last_error if state is TaskState.FAILED else None,
    )


def _meta(row: Any) -> dict[str, Any]:
    value = (row._mapping["metadata"] or {}).get(META_KEY)
    return value if isinstance(value, dict) else {}


def _status(state: TaskState) -> str:
    if state in WORKING_STATES:
        return "working"
    if state is TaskState.PENDING_APPROVAL:
        return "input_required"
    if state is TaskState.COMPLETED:
        return "completed"
    if state is TaskState.FAILED:
        return "failed"
    return "cancelled"  # cancelled, or skipped (passed over on purpose: it will not run)


def _message(row: Any, state: TaskState, now: datetime) -> str:
    attempts_total = row.max_retries + 1
    if state is TaskState.QUEUED:
        if row.retries:
            return f"queued for attempt {row.attempts + 1} of {attempts_total}"
        return "queued"
    if state is TaskState.RUNNING:
        return f"running, attempt {row.attempts} of {attempts_total}"
    if state is TaskState.RETRY_WAIT:
        wait_s = max(0.0, (row.backoff_until - now).total_seconds()) if row.backoff_until else 0
        return (
            f"attempt {row.attempts} of {attempts_total} failed ({row.last_error}); "
            f"retrying in {wait_s:.0f} s"
        )
    if state is TaskState.BLOCKED:
        return "waiting for the steps before it"
    if state is TaskState.PENDING_APPROVAL:
        return approval_message(row)
    if state is TaskState.COMPLETED:
        return "completed"
    if state is TaskState.FAILED:
        return f"failed after {row.attempts} attempt(s): {row.last_error}"
    if state is TaskState.SKIPPED:
        return f"skipped: {row.last_error or 'passed over'}"
    return "cancelled"


def approval_message(row: Any) -> str:
    settings = get_settings()
    where = settings.monitor_url.rstrip("/") if settings.monitor_url else ""
    link = f" at {where}/tasks/{row.id}" if where else f" (`taskledger approve {row.id}`)"
    session = f" of session {row.session_id}" if row.session_id else ""
    return f"waiting for a person to approve {row.name}{session}{link}"


def result_content(view: TaskView) -> tuple[str, dict[str, Any]]:
    """The tool result as text and as structured content (always a JSON object)."""
    structured = view.result if isinstance(view.result, dict) else {"result": view.result}
    return json.dumps(view.result, default=str), structured


def mcp_tools(app: Any) -> list[Any]:
    """The durable tasks served as MCP tools: ``mcp=True`` ones and ``TASKLEDGER_MCP_TOOLS``."""
    app.loader.import_default_modules()  # TASKLEDGER_IMPORTS, as a worker would
    listed = [n.strip() for n in get_settings().mcp_tools.split(",") if n.strip()]
    chosen = {
        name: task
        for name, task in sorted(app.tasks.items())
        if is_durable(task) and getattr(task, "mcp", False)
    }
    for name in listed:
        chosen[name] = durable_task(app, name)  # UnknownTask names the problem
    return list(chosen.values())
