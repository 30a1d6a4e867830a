"""Streamable HTTP for ``taskledger mcp --transport http``: the API's bearer tokens.

Every request needs ``Authorization: Bearer <token>`` (``taskledger token create``);
the token's user owns the tasks created through it and sees only those (an admin
token sees all). ``X-Session-Id`` names the ledger session, else the MCP session
id does, so the per-session window and policy apply to agents unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from api.tokens import lookup

Scope = dict[str, Any]


class BearerTokens:
    """ASGI middleware: 401 without a valid token; the user goes into ``request.state``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        user = await anyio.to_thread.run_sync(lookup, token) if token else None
        if user is None:
            detail = "unknown or revoked token" if token else "send Authorization: Bearer <token>"
            body = json.dumps({"error": "unauthorized", "detail": detail}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["taskledger_user"] = None if user.admin else user.id
        await self.app(scope, receive, send)


def http_app(server: MCPServer, *, host: str) -> Any:
    return BearerTokens(server.streamable_http_app(host=host))


def serve_http(server: MCPServer, *, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(http_app(server, host=host), host=host, port=port, log_level="warning")
