"""Durable tasks as MCP tools: schema from the signature, description from the docstring.

A plain ``tools/call`` (a client that asked for no task) enqueues the task and
waits for its final row, sending progress notifications while it waits. If
the wait runs out, the answer names the task id so the client can poll
(``tasks/get``, or ``GET /api/tasks/{id}``). A client-side cancellation
(``notifications/cancelled``) cancels the ledger task.
"""

from __future__ import annotations

import inspect
import logging
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from jobs import errors
from mcp_server import ledger
from models.settings import get_settings

log = logging.getLogger("taskledger.mcp")

WAIT_SLICE_S = 1.0  # how often a waiting plain call reports progress


def tool_function(
    app: Any, task: Any, caller_of: Callable[[Any], ledger.Caller]
) -> Callable[..., Any]:
    """An async function whose signature is the task's, plus the MCP context."""
    name = task.name
    run = task.run
    hints = typing.get_type_hints(run)
    params = [
        p.replace(annotation=hints.get(p.name, Any), kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(run).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)

    async def call(ctx: Context, **arguments: Any) -> CallToolResult:
        key = ledger.idempotency_key_of(ctx.request_context.meta)
        return await call_and_wait(app, name, arguments, caller_of(ctx), ctx, key)

    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*params, ctx_param], return_annotation=CallToolResult
    )
    call.__annotations__ = {**{p.name: p.annotation for p in params}, "ctx": Context}
    call.__name__ = name.replace(".", "_")
    call.__doc__ = inspect.getdoc(run) or f"Run the durable task {name}."
    return call


async def call_and_wait(
    app: Any,
    name: str,
    arguments: Mapping[str, Any],
    caller: ledger.Caller,
    ctx: Context,
    idempotency_key: str | None = None,
) -> CallToolResult:
    """Seed 002's sync mode: enqueue (it still goes through the queue), then wait."""
    try:
        task_id = await anyio.to_thread.run_sync(
            lambda: ledger.enqueue(
                app, name, arguments, caller=caller, mode="call", idempotency_key=idempotency_key
            )
        )
    except errors.TaskledgerError as exc:
        raise ToolError(str(exc)) from None
    timeout_s = get_settings().mcp_wait_seconds
    waited = 0.0
    try:
        while True:
            row = await anyio.to_thread.run_sync(
                ledger.wait, task_id, min(WAIT_SLICE_S, timeout_s - waited), abandon_on_cancel=True
            )
            if row is not None:
                return tool_result(ledger.describe(row))
            waited += WAIT_SLICE_S
            view = ledger.describe(await anyio.to_thread.run_sync(ledger.load, task_id))
            if waited >= timeout_s:
                return still_running(view, timeout_s)
            await ctx.report_progress(waited, None, f"task {task_id}: {view.status_message}")
    except anyio.get_cancelled_exc_class():
        # The client gave up (notifications/cancelled or a closed connection): so does the task.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_cancel_quietly, app, task_id)
        raise


def _cancel_quietly(app: Any, task_id: uuid.UUID) -> None:
    try:
        ledger.cancel(app, task_id, reason="the MCP client cancelled the call")
    except Exception:
        log.warning("could not cancel task %s after the client cancelled", task_id, exc_info=True)


def tool_result(view: ledger.TaskView) -> CallToolResult:
    """The tool result of a final task: its JSON result, or its error as a tool error."""
    if view.status == "completed":
        text, structured = ledger.result_content(view)
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=structured
        )
    detail = view.error if view.status == "failed" else view.status_message
    return CallToolResult(
        content=[TextContent(type="text", text=f"task {view.task_id} {view.status}: {detail}")],
        is_error=True,
    )


def still_running(view: ledger.TaskView, timeout_s: float) -> CallToolResult:
    text = (
        f"task {view.task_id} is still {view.status} after {timeout_s:g} s "
        f"({view.status_message}); it keeps running. Poll it with tasks/get taskId={view.task_id} "
        f"or GET /api/tasks/{view.task_id}."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"taskId": view.task_id, "status": view.status},
        is_error=True,
    )
