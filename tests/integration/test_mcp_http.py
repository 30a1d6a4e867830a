"""`taskledger mcp --transport http`: the API's bearer tokens, per-user scoping, X-Session-Id."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from jobs import queries
from mcp_server.client import LedgerTasksClient, get_task, wait_for_task
from models.db import transaction
from tests.integration.test_mcp import MCP_ENV, mcp_cluster, stdio_params  # noqa: F401
from tests.support import services

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def http_url(mcp_cluster: Any, clean: None) -> Iterator[str]:  # noqa: F811
    port = free_port()
    params = stdio_params("unused")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "mcp", "--transport", "http", "--port", str(port)],
        cwd=services.ROOT,
        env=params.env,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    services.wait_for(lambda: _listening(port), 30, "the MCP HTTP server")
    yield url
    proc.terminate()
    proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def client(url: str, token: str, session: str, **kw: Any) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", "X-Session-Id": session})
    return Client(streamable_http_client(url, http_client=http), **kw)


def test_http_needs_a_token(http_url: str) -> None:
    answer = httpx.post(http_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_http_call_as_task_is_scoped_to_its_user_and_session(http_url: str) -> None:
    from api.tokens import create_token

    alice = create_token(f"alice-{uuid.uuid4().hex[:6]}")
    bob = create_token(f"bob-{uuid.uuid4().hex[:6]}")

    async def go() -> tuple[str, Any, Exception | None]:
        async with client(http_url, alice, "agent-7", extensions=[LedgerTasksClient()]) as c:
            created = await c.session.call_tool("mcp.add", {"a": 1, "b": 2}, allow_claimed=True)
            final = await wait_for_task(c.session, created.task_id, timeout_s=60)
        refused = None
        async with client(http_url, bob, "agent-8", extensions=[LedgerTasksClient()]) as c:
            try:
                await get_task(c.session, created.task_id)
            except Exception as exc:  # someone else's task reads as unknown
                refused = exc
        return created.task_id, final, refused

    task_id, final, refused = anyio.run(go)
    assert final.status == "completed"
    assert final.result["structuredContent"] == {"sum": 3}
    assert refused is not None and "no task" in str(refused)
    with transaction() as conn:
        row = queries.get_task(conn, uuid.UUID(task_id))
    assert row.session_id == "agent-7"  # X-Session-Id became the ledger session
    assert row.user_id is not None and row.user_id.startswith("alice-")
