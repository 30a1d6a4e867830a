"""The FastAPI app: ``uvicorn api.app:app`` or ``taskledger api``.

OpenAPI at /openapi.json (Swagger UI at /docs), the monitor at /tasks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, goals, lists, monitor, sessions, stream, system, tasks
from api.feed import EventFeed
from api.metrics import make_registry
from models.settings import get_settings

# A request body beyond the task payload limit cannot be valid; refuse it before reading it.
BODY_SLACK_BYTES = 64 * 1024


class BodyLimit:
    """413 for a body over the limit, whether it announces its length or streams."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send, self.limit)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": "payload_too_large", "detail": f"request body over {limit} bytes"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app() -> FastAPI:
    registry, event_metrics = make_registry()
    feed = EventFeed()
    feed.listeners.append(event_metrics.observe)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    app = FastAPI(
        title="taskledger",
        version="1",
        description="Durable, auditable tasks for AI agents: enqueue, watch, steer. "
        "Every call but /healthz, /readyz and /metrics needs `Authorization: Bearer <token>` "
        '(`taskledger token create --user U`). Errors are `{"error": code, "detail": ...}`.',
        lifespan=lifespan,
    )
    app.state.feed = feed
    app.state.registry = registry
    errors.install(app)
    app.include_router(stream.router)  # before /api/tasks/{task_id}
    app.include_router(tasks.router)
    app.include_router(sessions.router)
    app.include_router(goals.router)
    app.include_router(lists.router)
    app.include_router(system.router)
    app.include_router(monitor.router)
    monitor.mount_static(app)
    limit = get_settings().max_payload_bytes + BODY_SLACK_BYTES
    app.add_middleware(BodyLimit, limit=limit)
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn api.app:app`` builds the app on first use, not at import.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
