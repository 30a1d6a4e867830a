"""MCP Tasks with the ledger as the durable task store, in both revisions the SDK negotiates.

2026-07-28, the Tasks extension ``io.modelcontextprotocol/tasks``: when a
request's capabilities carry the extension, ``tools/call`` is answered at once
with ``resultType: "task"``; then ``tasks/get`` (the result or error inline),
``tasks/update`` and ``tasks/cancel``.

2025-11-25, tasks in core: a ``tools/call`` with a ``task`` param is answered
with ``CreateTaskResult``; then ``tasks/get``, ``tasks/result`` (blocks until
final), ``tasks/cancel`` and ``tasks/list``. The SDK sieves core results through
the revision's schema, so that call is answered by middleware, which also adds
the ``tasks`` capability to ``initialize`` and ``execution.taskSupport`` to
``tools/list``.

Either way the task id is the ledger task id: results outlive this process
and the workers, and ``GET /api/tasks/{id}`` shows the same task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, PaginatedRequestParams, RequestParams
from mcp_types.jsonrpc import INVALID_PARAMS
from pydantic import ConfigDict, Field

from jobs import errors
from mcp_server import ledger
from mcp_server.tools import tool_result

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
MODERN = frozenset({"2026-07-28"})
LEGACY = frozenset({"2025-11-25"})


class TaskIdParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateTaskParams(RequestParams):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId")
    input_responses: dict[str, Any] | None = Field(default=None, alias="inputResponses")


CallerOf = Callable[[ServerRequestContext[Any, Any]], ledger.Caller]
Validate = Callable[[str, dict[str, Any]], dict[str, Any] | None]


class LedgerTasks(Extension):
    """The Tasks extension (2026-07-28) and the 2025-11-25 task methods, over the ledger."""

    identifier = TASKS_EXTENSION

    def __init__(self, app: Any, *, caller_of: CallerOf, validate: Validate) -> None:
        self.app = app
        self.caller_of = caller_of
        self.validate = validate  # tool name, arguments -> checked arguments (None: not ours)

    # -- 2026-07-28: tools/call answered with a task -----------------------------------

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if ctx.protocol_version not in MODERN or not _client_speaks_tasks(ctx):
            return await call_next(ctx)
        arguments = self.validate(params.name, dict(params.arguments or {}))
        if arguments is None:
            return await call_next(ctx)
        view = await self.create(
            params.name,
            arguments,
            ctx,
            ttl_ms=None,
            mode="task",
            idempotency_key=ledger.idempotency_key_of(params.meta or ctx.meta),
        )
        return {"resultType": "task", **modern_task(view, detailed=False)}

    async def create(
        self,
        name: str,
        arguments: dict[str, Any],
        ctx: ServerRequestContext[Any, Any],
        *,
        ttl_ms: int | None,
        mode: str,
        idempotency_key: str | None = None,
    ) -> ledger.TaskView:
        caller = self.caller_of(ctx)

        def write() -> ledger.TaskView:
            task_id = ledger.enqueue(
                self.app,
                name,
                arguments,
                caller=caller,
                ttl_ms=ttl_ms,
                mode=mode,
                idempotency_key=idempotency_key,
            )
            return ledger.describe(ledger.load(task_id))  # durably created: tasks/get resolves

        try:
            return await anyio.to_thread.run_sync(write)
        except errors.TaskledgerError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

    # -- the methods -------------------------------------------------------------------

    def methods(self) -> Sequence[MethodBinding]:
        both = MODERN | LEGACY
        return (
            MethodBinding("tasks/get", TaskIdParams, self.get, both),
            MethodBinding("tasks/cancel", TaskIdParams, self.cancel, both),
            MethodBinding("tasks/update", UpdateTaskParams, self.update, MODERN),
            MethodBinding("tasks/result", TaskIdParams, self.result, LEGACY),
            MethodBinding("tasks/list", PaginatedRequestParams, self.list, LEGACY),
        )

    async def _view(self, ctx: ServerRequestContext[Any, Any], raw_id: str) -> ledger.TaskView:
        caller = self.caller_of(ctx)
        try:
            task_id = ledger.parse_id(raw_id)
            row = await anyio.to_thread.run_sync(lambda: ledger.load(task_id, caller))
        except errors.NotFound as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None
        return ledger.describe(row)

    async def get(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        view = await self._view(ctx, params.task_id)
        if ctx.protocol_version in MODERN:
            return modern_task(view, detailed=True)
        return legacy_task(view)

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        view = await self._view(ctx, params.task_id)
        if view.final:
            if ctx.protocol_version in MODERN:
                return {}
            raise MCPError(
                code=INVALID_PARAMS, message=f"task {view.task_id} is already {view.status}"
            )
        task_id = ledger.parse_id(view.task_id)
        await anyio.to_thread.run_sync(
            lambda: ledger.cancel(self.app, task_id, reason="cancelled by the MCP client")
        )
        if ctx.protocol_version in MODERN:
            return {}  # an acknowledgement; tasks/get shows the outcome
        return legacy_task(await self._view(ctx, view.task_id))

    async def update(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        # The only input a ledger task waits for is an approval, and that is given in the
        # ledger (the monitor, the API or the CLI), never by the caller who asked for the work.
        await self._view(ctx, params.task_id)
        return {}

    async def result(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        view = await self._view(ctx, params.task_id)
        task_id = ledger.parse_id(view.task_id)
        while not view.final:  # tasks/result blocks until the task is final (2025-11-25)
            row = await anyio.to_thread.run_sync(ledger.wait, task_id, 1.0, abandon_on_cancel=True)
            if row is not None:
                view = ledger.describe(row)
        out = tool_result(view).model_dump(by_alias=True, mode="json", exclude_none=True)
        out["_meta"] = {"io.modelcontextprotocol/related-task": {"taskId": view.task_id}}
        return out

    async def list(self, ctx: ServerRequestContext[Any, Any], params: Any) -> HandlerResult:
        caller = self.caller_of(ctx)
        offset = int(params.cursor) if params and params.cursor and params.cursor.isdigit() else 0
        page = 100
        rows = await anyio.to_thread.run_sync(
            lambda: ledger.list_for(caller, limit=page + 1, offset=offset)
        )
        out: dict[str, Any] = {"tasks": [legacy_task(ledger.describe(r)) for r in rows[:page]]}
        if len(rows) > page:
            out["nextCursor"] = str(offset + page)
        return out


def _client_speaks_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    caps = ctx.session.client_capabilities
    return bool(caps and caps.extensions and TASKS_EXTENSION in caps.extensions)


def legacy_task(view: ledger.TaskView) -> dict[str, Any]:
    """A 2025-11-25 ``Task``."""
    return {
        "taskId": view.task_id,
        "status": view.status,
        "statusMessage": view.status_message,
        "createdAt": view.created_at,
        "lastUpdatedAt": view.last_updated_at,
        "ttl": view.ttl_ms,
        "pollInterval": ledger.POLL_INTERVAL_MS,
    }


def modern_task(view: ledger.TaskView, *, detailed: bool) -> dict[str, Any]:
    """A 2026-07-28 ``Task``; ``detailed`` inlines the result, error or input requests."""
    out: dict[str, Any] = {
        "taskId": view.task_id,
        "status": view.status,
        "statusMessage": view.status_message,
        "createdAt": view.created_at,
        "lastUpdatedAt": view.last_updated_at,
        "ttlMs": view.ttl_ms,
        "pollIntervalMs": ledger.POLL_INTERVAL_MS,
    }
    if not detailed:
        return out
    if view.status == "completed":
        out["result"] = tool_result(view).model_dump(by_alias=True, mode="json", exclude_none=True)
    elif view.status == "failed":
        out["error"] = {"code": -32603, "message": view.error or "failed"}
    elif view.status == "input_required":
        out["inputRequests"] = {f"approval-{view.task_id}": _approval_request(view)}
    return out


def _approval_request(view: ledger.TaskView) -> dict[str, Any]:
    """What an input_required ledger task asks: a person's approval, given elsewhere."""
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": view.status_message,
            "requestedSchema": {"type": "object", "properties": {}},
        },
    }


def legacy_middleware(tasks: LedgerTasks) -> Any:
    """2025-11-25: answer task-augmented ``tools/call`` and advertise the tasks capability."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        if ctx.method == "initialize":
            result = await call_next(ctx)
            if isinstance(result, dict) and result.get("protocolVersion") in LEGACY:
                result.setdefault("capabilities", {})["tasks"] = {
                    "list": {},
                    "cancel": {},
                    "requests": {"tools": {"call": {}}},
                }
            return result
        if ctx.protocol_version not in LEGACY:
            return await call_next(ctx)
        params = dict(ctx.params or {})
        if ctx.method == "tools/call" and isinstance(params.get("task"), dict):
            arguments = tasks.validate(str(params.get("name")), dict(params.get("arguments") or {}))
            if arguments is None:
                raise MCPError(
                    code=INVALID_PARAMS, message=f"tool {params.get('name')!r} cannot run as a task"
                )
            ttl = params["task"].get("ttl")
            view = await tasks.create(
                str(params["name"]),
                arguments,
                ctx,
                ttl_ms=int(ttl) if isinstance(ttl, int | float) else None,
                mode="task",
                idempotency_key=ledger.idempotency_key_of(params.get("_meta") or ctx.meta),
            )
            return {"task": legacy_task(view)}
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict):
            for tool in result.get("tools", []):  # every tool here is a ledger task
                tool["execution"] = {"taskSupport": "optional"}
        return result

    return middleware
