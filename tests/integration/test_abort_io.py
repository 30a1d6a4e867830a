"""Abort reaches I/O: cancelling a task cuts its in-flight HTTP request at once, and the
aborted attempt is never retried."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from jobs import operations
from jobs.enqueue import enqueue
from models import TaskState
from tests.support import ledger
from tests.support.services import Cluster, wait_for
from workers.app import app


class _SlowServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stop = threading.Event()
    arrived: list[float] = []


class _Slow(http.server.BaseHTTPRequestHandler):
    """Sends the headers and one byte of a 1 MB body, then trickles nothing for 60 s."""

    def do_GET(self) -> None:
        self.server.arrived.append(time.time())  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"x")
        self.wfile.flush()
        self.server.stop.wait(60)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def slow_url() -> Iterator[tuple[str, _SlowServer]]:
    server = _SlowServer(("127.0.0.1", 0), _Slow)
    server.arrived = []
    server.stop = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/slow", server
    server.stop.set()
    server.shutdown()


@pytest.mark.parametrize("task", ["s.fetch", "s.afetch"])
def test_cancel_aborts_the_request_and_is_not_retried(
    cluster: Cluster, clean: None, counter, slow_url: tuple[str, _SlowServer], task: str
) -> None:
    url, server = slow_url
    handle = enqueue(app, task, [url])
    # given: the request is in flight (the server has it and is holding the body back)
    wait_for(lambda: server.arrived, 30, "the request to reach the server")
    time.sleep(0.3)
    assert ledger.task(handle.id).state is TaskState.RUNNING
    # when
    cancelled_at = time.time()
    operations.cancel_task(app, handle.uuid, reason="user pressed cancel")
    # then: the handler's request ended quickly (well within the 2 s kill grace, so the
    # code itself saw the abort and went on to its `finally`)
    ended = float(wait_for(lambda: counter.get(f"fetch-end:{handle.id}"), 10, "the abort"))
    abort_s = ended - cancelled_at
    print(f"\n{task}: in-flight request aborted {abort_s * 1000:.0f} ms after the cancel")
    assert abort_s < 1.5
    # the task is cancelled and never retried
    time.sleep(1.5)
    row = ledger.task(handle.id)
    assert row.state is TaskState.CANCELLED and row.attempts == 1
    assert int(counter.get(f"runs:{handle.id}")) == 1
    assert "task_scheduled_for_retry" not in ledger.event_types(handle.id)
    assert len(server.arrived) == 1
