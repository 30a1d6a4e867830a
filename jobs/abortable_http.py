"""HTTP clients whose in-flight requests abort the moment their task is cancelled (seed 002 11.4).

``current_context().http`` (an ``httpx.Client``) and ``current_context().async_http``
(an ``httpx.AsyncClient``) record every socket they open. A watcher thread waits on
the task's cancellation event; when it is set, it shuts the sockets down
(``shutdown(SHUT_RDWR)``, which wakes a ``recv`` blocked in another thread, unlike
``close``). The request in flight then fails at once and the client raises
``TaskCancelled``: the row is already ``cancelled``, so the attempt is never retried.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import httpcore
import httpx

from jobs.errors import TaskCancelled

WATCH_INTERVAL_S = 0.02  # how often the watcher also checks whether the attempt ended


class _Sockets:
    """The sockets of one task's clients, and the switch that kills them."""

    def __init__(self, cancelled: threading.Event, task_id: Any) -> None:
        self.cancelled = cancelled
        self.task_id = task_id
        self.lock = threading.Lock()
        self.streams: list[Any] = []
        self.aborted = False
        self.closed = threading.Event()
        threading.Thread(target=self._watch, name="taskledger-http-abort", daemon=True).start()

    def add(self, stream: Any) -> None:
        with self.lock:
            self.streams.append(stream)
            late = self.aborted
        if late:
            _shutdown(stream)

    def _watch(self) -> None:
        while not self.closed.is_set():
            if self.cancelled.wait(WATCH_INTERVAL_S):
                self.abort()
                return

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            streams = list(self.streams)
        for stream in streams:
            _shutdown(stream)

    def close(self) -> None:
        self.closed.set()

    def aborted_error(self, request: httpx.Request) -> TaskCancelled:
        """What a request cut by the cancel raises, from the sync and the async client alike."""
        return TaskCancelled(
            f"task {self.task_id} was cancelled; {request.method} {request.url} aborted"
        )

    def check(self) -> None:
        if self.aborted or self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled; request aborted")


def _shutdown(stream: Any) -> None:
    sock = stream.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, sockets: _Sockets) -> None:
        self.inner = inner
        self.sockets = sockets

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        self.sockets.check()
        stream = self.inner.connect_tcp(*args, **kwargs)
        self.sockets.add(stream)
        return stream

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        self.sockets.check()
        stream = self.inner.connect_unix_socket(*args, **kwargs)
        self.sockets.add(stream)
        return stream

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend, sockets: _Sockets) -> None:
        self.inner = inner
        self.sockets = sockets

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.sockets.check()
        stream = await self.inner.connect_tcp(*args, **kwargs)
        self.sockets.add(stream)
        return stream

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.sockets.check()
        stream = await self.inner.connect_unix_socket(*args, **kwargs)
        self.sockets.add(stream)
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class AbortableClient(httpx.Client):
    """``httpx.Client`` that raises ``TaskCancelled`` when its task's cancel cut a request."""

    def __init__(self, sockets: _Sockets, **options: Any) -> None:
        transport = httpx.HTTPTransport()
        pool = transport._pool
        pool._network_backend = _Backend(pool._network_backend, sockets)
        super().__init__(transport=transport, **options)
        self._sockets = sockets

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._sockets.check()
        try:
            return super().send(request, **kwargs)
        except httpx.TransportError as exc:
            if self._sockets.aborted:
                raise self._sockets.aborted_error(request) from exc
            raise


class AbortableAsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` with the same abort-on-cancel behaviour."""

    def __init__(self, sockets: _Sockets, **options: Any) -> None:
        transport = httpx.AsyncHTTPTransport()
        pool = transport._pool
        pool._network_backend = _AsyncBackend(pool._network_backend, sockets)
        super().__init__(transport=transport, **options)
        self._sockets = sockets

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._sockets.check()
        try:
            return await super().send(request, **kwargs)
        except httpx.TransportError as exc:
            if self._sockets.aborted:
                raise self._sockets.aborted_error(request) from exc
            raise


def client_for(ctx: Any, *, asynchronous: bool) -> Any:
    """The task's client (one of each kind per attempt), closed when the attempt ends."""
    key = "async_http" if asynchronous else "http"
    client = ctx.resources.get(key)
    if client is None:
        sockets = _Sockets(ctx.cancelled, ctx.task_id)
        client = AbortableAsyncClient(sockets) if asynchronous else AbortableClient(sockets)
        ctx.resources[key] = client
        ctx.closers.append(lambda: _close(client, sockets))
    return client


def _close(client: Any, sockets: _Sockets) -> None:
    sockets.close()
    if isinstance(client, httpx.Client):
        client.close()
    else:  # an AsyncClient cannot be awaited here: cut its sockets instead
        sockets.abort()
