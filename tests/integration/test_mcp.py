"""`taskledger mcp` over stdio, driven by the `mcp` SDK's own client, against a real cluster.

Both revisions the SDK negotiates: 2026-07-28 (the Tasks extension, spoken by the SDK client
through mcp_server.client.LedgerTasksClient) and 2025-11-25 (initialize handshake; tasks in core).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis
from mcp import Client, StdioServerParameters
from mcp_types import (
    CallToolResult,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    GetTaskResult,
    ListTasksRequest,
    ListTasksResult,
)

from jobs import queries
from mcp_server.client import LedgerTasksClient, cancel_task, get_task, wait_for_task
from models import TaskState
from models.db import transaction
from tests.support import services
from tests.support.services import Cluster

pytestmark = pytest.mark.timeout(240)

MCP_ENV = {
    "TASKLEDGER_IMPORTS": "tests.support.tasks,tests.support.mcp_tasks,tests.support.flow_tasks",
    "TASKLEDGER_POLICY_FILE": str(services.ROOT / "tests" / "support" / "mcp_policy.toml"),
    "TASKLEDGER_MONITOR_URL": "http://127.0.0.1:8000",
    "TASKLEDGER_MCP_TOOLS": "mcp.hidden",
    "TASKLEDGER_MCP_WAIT_SECONDS": "4",
}


@pytest.fixture(scope="module")
def mcp_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster (its workers import the MCP and flow tasks). Not a second one:
    two clusters on one Redis steal each other's messages. MCP_ENV is the MCP server's."""
    yield cluster


@pytest.fixture()
def stdio(mcp_cluster: Cluster, clean: None) -> StdioServerParameters:
    return stdio_params(session="mcp-test")


def stdio_params(session: str) -> StdioServerParameters:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("TASKLEDGER_") or k == "TEST_COUNTER_URL"
    }
    env.update(MCP_ENV, PYTHONPATH=str(services.ROOT))
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "cli.main", "mcp", "--session", session],
        env=env,
        cwd=str(services.ROOT),
    )


def row(task_id: str) -> Any:
    with transaction() as conn:
        return queries.get_task(conn, uuid.UUID(task_id))


def run(fn: Any) -> Any:
    return anyio.run(fn)


def test_lists_tools_with_schemas_from_signatures(stdio: StdioServerParameters) -> None:
    async def go() -> dict[str, Any]:
        async with Client(stdio) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    tools = run(go)
    # given mcp=True on three tasks and TASKLEDGER_MCP_TOOLS=mcp.hidden; t.add is not served
    assert {"mcp.add", "mcp.slow", "mcp.fail", "mcp.hidden"} <= set(tools)
    assert "t.add" not in tools
    schema = tools["mcp.add"].input_schema
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["properties"]["b"] == {"default": 10, "title": "B", "type": "integer"}
    assert schema["required"] == ["a"]
    assert tools["mcp.add"].description == "Add two integers and return their sum."


def test_plain_call_enqueues_waits_and_returns_the_result(stdio: StdioServerParameters) -> None:
    async def go() -> tuple[str, CallToolResult]:
        async with Client(stdio, mode="legacy") as client:
            return client.protocol_version, await client.call_tool("mcp.add", {"a": 2, "b": 3})

    version, result = run(go)
    assert version == "2025-11-25"
    assert not result.is_error
    assert result.structured_content == {"sum": 5}
    assert result.content[0].text == '{"sum": 5}'
    with transaction() as conn:
        rows = queries.list_tasks(conn, session_id="mcp-test")
    assert [(r.name, r.state, r.result) for r in rows] == [
        ("mcp.add", TaskState.COMPLETED, {"sum": 5})
    ]


def test_plain_call_reports_progress_and_a_timeout_names_the_task(
    stdio: StdioServerParameters,
) -> None:
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def go() -> CallToolResult:
        async with Client(stdio, mode="legacy") as client:
            return await client.call_tool("mcp.slow", {"seconds": 8}, progress_callback=on_progress)

    result = run(go)
    # the wait (TASKLEDGER_MCP_WAIT_SECONDS=4) runs out: the answer names the task, which runs on
    assert result.is_error
    task_id = result.structured_content["taskId"]
    assert f"tasks/get taskId={task_id}" in result.content[0].text
    assert row(task_id).state in (TaskState.QUEUED, TaskState.RUNNING)
    assert progress and all(task_id in m for m in progress)


def test_failed_tool_comes_back_as_a_tool_error(stdio: StdioServerParameters) -> None:
    async def go() -> CallToolResult:
        async with Client(stdio) as client:
            return await client.call_tool("mcp.fail", {"reason": "no such city"})

    result = run(go)
    assert result.is_error
    assert "ValueError: no such city" in result.content[0].text


def test_bad_arguments_are_refused_and_write_nothing(stdio: StdioServerParameters) -> None:
    async def go() -> CallToolResult:
        async with Client(stdio, mode="legacy") as client:
            return await client.call_tool("mcp.add", {"a": "not a number"})

    result = run(go)
    assert result.is_error
    with transaction() as conn:
        assert queries.list_tasks(conn, session_id="mcp-test") == []


def test_call_as_task_then_poll_then_result(stdio: StdioServerParameters) -> None:
    transcript: list[str] = []

    async def go() -> tuple[Any, Any]:
        async with Client(stdio, extensions=[LedgerTasksClient()]) as client:
            transcript.append(f"negotiated {client.protocol_version}")
            created = await client.session.call_tool(
                "mcp.add", {"a": 20, "b": 22}, allow_claimed=True
            )
            transcript.append(f"tools/call -> {created.model_dump(by_alias=True)}")
            final = await wait_for_task(client.session, created.task_id, timeout_s=60)
            transcript.append(f"tasks/get -> {final.model_dump(by_alias=True, exclude_none=True)}")
            return created, final

    created, final = run(go)
    print("\n".join(transcript))
    # the MCP task id is the ledger task id
    assert row(created.task_id).name == "mcp.add"
    assert created.status == "working"
    assert final.status == "completed"
    assert final.result["structuredContent"] == {"sum": 42}
    assert row(created.task_id).state is TaskState.COMPLETED


def test_client_extension_finishes_a_task_transparently(stdio: StdioServerParameters) -> None:
    async def go() -> CallToolResult:
        async with Client(stdio, extensions=[LedgerTasksClient(timeout_s=60)]) as client:
            return await client.call_tool("mcp.add", {"a": 1})

    result = run(go)
    assert result.structured_content == {"sum": 11}


def test_tasks_cancel_reaches_running_code(
    stdio: StdioServerParameters, counter: redis.Redis
) -> None:
    async def go() -> tuple[str, Any]:
        async with Client(stdio, extensions=[LedgerTasksClient()]) as client:
            created = await client.session.call_tool(
                "mcp.slow", {"seconds": 60}, allow_claimed=True
            )
            with anyio.fail_after(30):
                while (await get_task(client.session, created.task_id)).status_message is None or (
                    "running"
                    not in (await get_task(client.session, created.task_id)).status_message
                ):
                    await anyio.sleep(0.1)
            await cancel_task(client.session, created.task_id)
            return created.task_id, await wait_for_task(
                client.session, created.task_id, timeout_s=30
            )

    task_id, final = run(go)
    assert final.status == "cancelled"
    assert row(task_id).state is TaskState.CANCELLED
    services.wait_for(lambda: counter.get(f"saw-cancel:{task_id}"), 10, "the handler's signal")


def test_client_side_cancellation_of_a_plain_call_cancels_the_task(
    stdio: StdioServerParameters,
) -> None:
    async def go() -> None:
        async with Client(stdio, mode="legacy") as client:
            with anyio.move_on_after(2):
                await client.call_tool("mcp.slow", {"seconds": 60})
            await anyio.sleep(1.5)  # the server handles notifications/cancelled

    run(go)
    with transaction() as conn:
        rows = queries.list_tasks(conn, session_id="mcp-test")
    assert len(rows) == 1
    services.wait_for(lambda: row(str(rows[0].id)).state is TaskState.CANCELLED, 10, "cancel")


def test_legacy_revision_task_augmented_call_get_result_and_list(
    stdio: StdioServerParameters,
) -> None:
    async def go() -> tuple[Any, ...]:
        async with Client(stdio, mode="legacy") as client:
            caps = client.server_capabilities
            tools = (await client.list_tools()).tools
            # The SDK client cannot send a task-augmented tools/call itself (it never advertises
            # the tasks capability and sieves the answer as a CallToolResult): send it raw.
            raw = await client.session._dispatcher.send_raw_request(
                "tools/call",
                {"name": "mcp.add", "arguments": {"a": 5}, "task": {"ttl": 60000}},
                {},
            )
            task_id = raw["task"]["taskId"]
            got = await client.session.send_request(
                GetTaskRequest(params=GetTaskRequestParams(task_id=task_id)), GetTaskResult
            )
            payload = await client.session.send_request(
                GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(task_id=task_id)),
                CallToolResult,
            )
            listed = await client.session.send_request(ListTasksRequest(), ListTasksResult)
            return caps, tools, raw, got, payload, listed

    caps, tools, raw, got, payload, listed = run(go)
    assert caps.tasks is not None and caps.tasks.requests is not None
    assert {t.execution.task_support for t in tools if t.execution} == {"optional"}
    assert all(t.execution for t in tools)
    assert raw["task"]["ttl"] == 60000 and raw["task"]["status"] == "working"
    assert got.task_id == raw["task"]["taskId"]
    assert payload.structured_content == {"sum": 15}
    assert [t.task_id for t in listed.tasks] == [got.task_id]
    assert listed.tasks[0].status == "completed"


def test_result_survives_restart_of_mcp_server_and_workers(
    mcp_cluster: Cluster, clean: None
) -> None:
    # given a task created through one MCP server process
    async def create() -> str:
        async with Client(stdio_params("restart"), extensions=[LedgerTasksClient()]) as client:
            created = await client.session.call_tool(
                "mcp.slow", {"seconds": 3, "label": "survived"}, allow_claimed=True
            )
            return created.task_id

    task_id = run(create)
    # when the workers stop mid-run and come back, and the MCP server is a new process
    mcp_cluster.stop_workers()
    mcp_cluster.start_worker()

    async def poll() -> Any:
        async with Client(stdio_params("restart"), extensions=[LedgerTasksClient()]) as client:
            return await wait_for_task(client.session, task_id, timeout_s=90)

    final = run(poll)
    # then the result is there
    assert final.status == "completed"
    assert final.result["structuredContent"] == {"result": "survived"}
