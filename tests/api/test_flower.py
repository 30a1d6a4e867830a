"""Flower watches our workers: a task enqueued through our API is found in Flower's REST API
by the id our API returned, in the same state (the row id is the Celery task id)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.support import free_port
from tests.support.services import ROOT, wait_for

pytestmark = pytest.mark.usefixtures("cluster", "clean")
AUTH = ("watcher", "s3cret-for-tests")
FLOWER_STATE = {"completed": "SUCCESS", "running": "STARTED", "queued": "RECEIVED"}


@pytest.fixture(scope="module")
def flower(cluster: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(Path(tmp_path_factory.mktemp("flower")) / "flower.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--basic_auth={AUTH[0]}:{AUTH[1]}",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def workers_seen() -> bool:
        try:
            r = httpx.get(f"{url}/api/workers?refresh=1", auth=AUTH, timeout=10)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and bool(r.json())

    try:
        wait_for(workers_seen, 90, "Flower to see our workers", interval=0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_flower_shows_the_task_our_api_returned_in_the_same_state(
    flower: str, alice: httpx.Client
) -> None:
    # Flower needs no password-less door: without credentials its API refuses.
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
    deadline = time.monotonic() + 90
    info: dict = {}
    task: dict = {}
    # Flower turns task events on in the workers a moment after it starts: retry until
    # it has watched one task from start to end.
    while not info and time.monotonic() < deadline:
        task = alice.post("/api/tasks?wait=30", json={"name": "t.add", "args": [3, 4]}).json()
        assert task["state"] == "completed"
        info = _flower_task(flower, task["id"], want="SUCCESS", timeout_s=5)
    assert info, "Flower never showed a task of ours"
    assert info["uuid"] == task["id"] and info["name"] == "t.add"
    assert info["state"] == FLOWER_STATE[task["state"]]
    workers = httpx.get(f"{flower}/api/workers", auth=AUTH, timeout=10).json()
    assert any(name.endswith("@localhost") for name in workers)


def _flower_task(flower: str, task_id: str, *, want: str, timeout_s: float) -> dict:
    """Flower's record of a task once it reached ``want``; {} if it did not in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{flower}/api/task/info/{task_id}", auth=AUTH, timeout=10)
        if r.status_code == 200 and r.json().get("state") == want:
            return dict(r.json())
        time.sleep(0.25)
    return {}
