"""``taskledger mcp``: serve durable tasks as MCP tools (stdio or streamable HTTP)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer()


@app.command("mcp")
def mcp(
    transport: Annotated[str, typer.Option(help="stdio or http")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8765,
    session: Annotated[
        str | None, typer.Option(help="ledger session for stdio callers (default: one per run)")
    ] = None,
) -> None:
    """Serve tasks declared with mcp=True (or in TASKLEDGER_MCP_TOOLS) as MCP tools."""
    if transport not in ("stdio", "http"):
        raise typer.BadParameter("--transport must be stdio or http")
    import anyio

    from mcp_server.server import build_server
    from workers.app import app as celery_app

    server = build_server(celery_app, session_id=session)
    if transport == "stdio":
        anyio.run(server.run_stdio_async)
        return
    from mcp_server.http import serve_http

    serve_http(server, host=host, port=port)
