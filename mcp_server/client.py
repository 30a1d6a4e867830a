"""The Tasks extension for the ``mcp`` SDK's own client (the SDK ships none).

    from mcp import Client
    from mcp_server.client import LedgerTasksClient

    async with Client("http://127.0.0.1:8765/mcp", extensions=[LedgerTasksClient()]) as c:
        result = await c.call_tool("reports.build", {"month": "2026-10"})  # polls tasks/get
        task = await c.session.call_tool("reports.build", {...}, allow_claimed=True)  # the task

With the extension the server answers ``tools/call`` at once with a task
(2026-07-28); ``call_tool`` then polls ``tasks/get`` until the task is final
and returns the tool result. ``get_task`` / ``cancel_task`` work on any task id,
also after a restart of the client, the MCP server or the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp_types import CallToolResult, Request, RequestParams, Result, TextContent
from pydantic import ConfigDict, Field

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
FINAL = ("completed", "failed", "cancelled")


class TaskIdParams(RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams


class CreatedTask(Result):
    """``CreateTaskResult`` (2026-07-28): a ``tools/call`` answered with a task handle."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """``tasks/get``: the task, with its result, error or input requests inline."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class Acknowledged(Result):
    model_config = ConfigDict(extra="allow")


async def get_task(session: ClientSession, task_id: str) -> TaskState:
    return await session.send_request(GetTask(params=TaskIdParams(taskId=task_id)), TaskState)


async def cancel_task(session: ClientSession, task_id: str) -> None:
    await session.send_request(CancelTask(params=TaskIdParams(taskId=task_id)), Acknowledged)


async def wait_for_task(
    session: ClientSession, task_id: str, *, timeout_s: float | None = None
) -> TaskState:
    """Poll ``tasks/get`` (at the server's suggested interval) until the task is final."""
    with anyio.fail_after(timeout_s):
        while True:
            state = await get_task(session, task_id)
            if state.status in FINAL:
                return state
            await anyio.sleep((state.poll_interval_ms or 500) / 1000)


def as_tool_result(state: TaskState) -> CallToolResult:
    if state.status == "completed" and state.result is not None:
        return CallToolResult.model_validate(state.result)
    if state.status == "failed":
        message = (state.error or {}).get("message", "failed")
    else:
        message = state.status_message or state.status
    text = f"task {state.task_id} {state.status}: {message}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class LedgerTasksClient(ClientExtension):
    """Advertise ``io.modelcontextprotocol/tasks`` and finish task results by polling."""

    identifier = TASKS_EXTENSION

    def __init__(self, *, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return (ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve),)

    async def _resolve(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        state = await wait_for_task(ctx.session, created.task_id, timeout_s=self.timeout_s)
        return as_tool_result(state)
