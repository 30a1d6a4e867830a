"""The MCP server: durable tasks as tools, the ledger as the task store (``taskledger mcp``)."""

from __future__ import annotations

import uuid
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from mcp_server import ledger
from mcp_server.tasks import LedgerTasks, legacy_middleware
from mcp_server.tools import tool_function

SERVER_NAME = "taskledger"
INSTRUCTIONS = (
    "Each tool is a durable taskledger task: calls are queued, audited, retried, may need a "
    "person's approval, and can be cancelled. Long calls can run as MCP tasks and be polled."
)


def build_server(app: Any, *, session_id: str | None = None) -> MCPServer:
    """An MCPServer serving ``app``'s MCP tools.

    ``session_id`` is the ledger session of callers that name none (stdio: one per
    server process). Over HTTP the ``X-Session-Id`` header, else the MCP session id,
    names it.
    """
    default_session = session_id or f"mcp-{uuid.uuid4().hex[:12]}"

    def caller_of(ctx: ServerRequestContext[Any, Any] | Context) -> ledger.Caller:
        request_ctx = ctx.request_context if isinstance(ctx, Context) else ctx
        request = request_ctx.request
        headers = getattr(request, "headers", None) or {}
        user = getattr(getattr(request, "state", None), "taskledger_user", None)
        session = headers.get("x-session-id") or headers.get("mcp-session-id") or default_session
        return ledger.Caller(session_id=str(session), user_id=user)

    def validate(name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Check arguments against the tool's schema as a plain call would (None: no such tool)."""
        tool = server._tool_manager.get_tool(name)
        if tool is None:
            return None
        try:
            return tool.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {name}: {exc}") from None

    tasks = LedgerTasks(app, caller_of=caller_of, validate=validate)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        extensions=[tasks],
        middleware=[legacy_middleware(tasks)],
    )
    for task in ledger.mcp_tools(app):
        server.add_tool(
            tool_function(app, task, caller_of), name=task.name, structured_output=False
        )
    return server
