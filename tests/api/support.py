"""The API under test: uvicorn in a thread of the test process, on a free 127.0.0.1 port,
against the suite's own Postgres and Redis and the ``cluster`` fixture's real workers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from sqlalchemy import text

from models.db import transaction

APPROVAL_SESSIONS = "approve-*"  # t.add in these sessions waits for a person


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Tokens:
    alice: str
    bob: str
    admin: str


def client(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=60)


def start_api(database: str) -> Iterator[str]:
    from api.server import ThreadedServer
    from jobs import policy

    policy.register_rule(
        action="require_approval",
        task="t.add",
        session=APPROVAL_SESSIONS,
        name="test: additions in approve-* sessions need a person",
        reason="additions need a person",
    )
    server = ThreadedServer("127.0.0.1", free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()
        # The rule is this process's: later tests (lifecycle, policy) must not inherit it.
        policy.clear_registered_rules()


def make_tokens(database: str) -> Tokens:
    from api.tokens import create_token

    with transaction() as conn:
        conn.execute(text("TRUNCATE api_tokens"))
    return Tokens(
        alice=create_token("alice"), bob=create_token("bob"), admin=create_token("root", admin=True)
    )


def truncate_ledger() -> None:
    with transaction() as conn:
        conn.execute(text("TRUNCATE task_events, tasks, goals, agent_sessions CASCADE"))
