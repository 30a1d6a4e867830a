"""MCP and the ledger's controls: approval (input_required), policy blocks, result TTL,
idempotency keys in ``_meta``, and the same task ids through ``GET /api/tasks/{id}``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from jobs import queries
from mcp_server.client import LedgerTasksClient, get_task, wait_for_task
from models import TaskState
from models.db import transaction
from tests.integration.test_mcp import mcp_cluster, row, stdio_params  # noqa: F401
from tests.support import mcp_tasks  # noqa: F401  (the API approves mcp.guarded by name)
from tests.support.services import Cluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def api(mcp_cluster: Cluster) -> Iterator[httpx.Client]:  # noqa: F811
    from api.server import ThreadedServer
    from api.tokens import create_token
    from tests.integration.test_mcp_http import free_port

    server = ThreadedServer("127.0.0.1", free_port()).start()
    token = create_token(f"mcp-admin-{uuid.uuid4().hex[:6]}", admin=True)
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        yield client
    server.stop()


@pytest.fixture()
def stdio(mcp_cluster: Cluster, clean: None) -> StdioServerParameters:  # noqa: F811
    return stdio_params(session="mcp-control")


def test_approval_required_tool_is_input_required_until_approved_through_the_api(
    stdio: StdioServerParameters, api: httpx.Client
) -> None:
    seen: dict[str, Any] = {}

    async def go() -> Any:
        async with Client(stdio, extensions=[LedgerTasksClient()]) as client:
            created = await client.session.call_tool(
                "mcp.guarded", {"amount": 250}, allow_claimed=True
            )
            seen["waiting"] = await get_task(client.session, created.task_id)
            # the same id through the plain HTTP API, where a person approves it
            seen["api"] = api.get(f"/api/tasks/{created.task_id}").json()
            answer = api.post(f"/api/tasks/{created.task_id}/approve")
            seen["approved"] = answer.status_code
            return await wait_for_task(client.session, created.task_id, timeout_s=60)

    final = anyio.run(go)
    waiting = seen["waiting"]
    assert waiting.status == "input_required"
    assert "approve mcp.guarded" in waiting.status_message
    assert f"http://127.0.0.1:8000/tasks/{waiting.task_id}" in waiting.status_message
    assert waiting.input_requests is not None
    assert seen["api"]["id"] == waiting.task_id and seen["api"]["state"] == "pending_approval"
    assert seen["approved"] == 200
    assert final.status == "completed"
    assert final.result["structuredContent"] == {"moved": 250}
    assert row(final.task_id).state is TaskState.COMPLETED


def test_policy_blocked_tool_is_an_error_and_recorded(stdio: StdioServerParameters) -> None:
    async def go() -> tuple[CallToolResult, Exception | None]:
        async with Client(stdio, mode="legacy") as client:
            plain = await client.call_tool("mcp.forbidden", {})
        refused = None
        async with Client(stdio, extensions=[LedgerTasksClient()]) as client:
            try:
                await client.session.call_tool("mcp.forbidden", {}, allow_claimed=True)
            except Exception as exc:  # the task-augmented call is refused as a protocol error
                refused = exc
        return plain, refused

    plain, refused = anyio.run(go)
    assert plain.is_error
    assert "blocked by policy rule mcp-forbidden: never over MCP" in plain.content[0].text
    assert refused is not None and "blocked by policy rule mcp-forbidden" in str(refused)
    with transaction() as conn:
        rows = queries.list_tasks(conn, session_id="mcp-control")
    # each blocked call is in the ledger as failed, and its handler never ran
    assert [(r.name, r.state, r.last_outcome) for r in rows] == [
        ("mcp.forbidden", TaskState.FAILED, "blocked")
    ] * 2


def test_result_is_not_served_after_its_ttl(
    stdio: StdioServerParameters, api: httpx.Client
) -> None:
    async def create() -> dict[str, Any]:
        async with Client(stdio, mode="legacy") as client:
            raw = await client.session._dispatcher.send_raw_request(
                "tools/call",
                {"name": "mcp.add", "arguments": {"a": 7}, "task": {"ttl": 2000}},
                {},
            )
            got = await client.session._dispatcher.send_raw_request(
                "tasks/get", {"taskId": raw["task"]["taskId"]}, {}
            )
            return {"created": raw["task"], "got": got}

    first = anyio.run(create)
    task_id = first["created"]["taskId"]
    assert first["created"]["ttl"] == 2000 and first["got"]["taskId"] == task_id
    # when the task has finished and 2 s have passed since its creation
    done = row(task_id)
    while done.state is not TaskState.COMPLETED:
        time.sleep(0.1)
        done = row(task_id)
    time.sleep(max(0.0, 2.2 - (time.time() - done.created_at.timestamp())))

    async def poll() -> tuple[Exception | None, list[Any]]:
        async with Client(stdio, mode="legacy") as client:
            refused = None
            try:
                await client.session._dispatcher.send_raw_request(
                    "tasks/get", {"taskId": task_id}, {}
                )
            except Exception as exc:
                refused = exc
            listed = await client.session._dispatcher.send_raw_request("tasks/list", {}, {})
            return refused, listed["tasks"]

    refused, listed = anyio.run(poll)
    # then MCP no longer serves it, while the ledger keeps the row until retention
    assert refused is not None and "ttl has passed" in str(refused)
    assert listed == []
    assert api.get(f"/api/tasks/{task_id}").json()["state"] == "completed"


def test_idempotency_key_in_meta_gives_the_first_task(stdio: StdioServerParameters) -> None:
    meta: Any = {"taskledger/idempotency-key": "mcp-order-9"}

    async def go() -> tuple[str, str, CallToolResult]:
        async with Client(stdio, extensions=[LedgerTasksClient()]) as client:
            first = await client.session.call_tool(
                "mcp.add", {"a": 1, "b": 1}, allow_claimed=True, meta=meta
            )
            second = await client.session.call_tool(
                "mcp.add", {"a": 5, "b": 5}, allow_claimed=True, meta=meta
            )
        async with Client(stdio, mode="legacy") as client:
            plain = await client.call_tool("mcp.add", {"a": 9}, meta=meta)
        return first.task_id, second.task_id, plain

    first, second, plain = anyio.run(go)
    assert first == second
    assert plain.structured_content == {"sum": 2}  # the first call's result, not a new task
    with transaction() as conn:
        rows = queries.list_tasks(conn, session_id="mcp-control")
    assert [str(r.id) for r in rows] == [first]
    assert rows[0].idempotency_key == "mcp-order-9"
