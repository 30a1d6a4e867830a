"""Side tasks under ``taskledger sidecar``: abort, restart with backoff, on_shutdown on
SIGTERM within the deadline, one instance cluster-wide, state in the CLI."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import cron_cluster, services
from tests.support.services import wait_for


@pytest.fixture(autouse=True)
def _fresh(database: str, counter) -> Iterator[None]:
    cron_cluster.truncate()
    counter.flushdb()
    yield


def sidecar(*names: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "sidecar", *names],
        cwd=services.ROOT,
        env=env or cron_cluster.cron_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def events(counter: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in counter.lrange(f"side:{name}", 0, -1)]


def side_list() -> dict[str, dict[str, Any]]:
    out = cron_cluster.taskledger("side", "list", "--json")
    assert out.returncode == 0, out.stderr
    return {r["key"]: r for r in json.loads(out.stdout)}


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> float:
    t0 = time.monotonic()
    os.killpg(proc.pid, sig)
    proc.wait(30)
    return time.monotonic() - t0


def test_abort_and_on_shutdown_on_sigterm_within_the_deadline(counter) -> None:
    # given: the loop side task runs in a sidecar
    proc = sidecar("test.side.loop")
    try:
        wait_for(lambda: counter.get("side-beat:test.side.loop"), 30, "the loop to run")
        assert side_list()["test.side.loop"]["state"] == "running"
    finally:
        # when: SIGTERM
        took = stop(proc)
    # then: on_shutdown ran, the loop saw its abort signal, and all within the deadline (5 s)
    kinds = [e["event"] for e in events(counter, "test.side.loop")]
    # (abort and on_shutdown happen together: the loop may log first)
    assert kinds[0] == "start" and sorted(kinds[1:]) == ["aborted", "on_shutdown"]
    assert proc.returncode == 0
    assert took < 5 + 2
    state = side_list()["test.side.loop"]
    assert state["state"] == "stopped" and state["holder"] is None
    print(f"\nSIGTERM -> sidecar exited in {took:.2f}s")


def test_restart_after_error_with_backoff(counter) -> None:
    # given: crashy raises on its first two runs (backoff 0.5 s, doubling)
    proc = sidecar("test.side.crashy")
    try:
        wait_for(lambda: len(events(counter, "test.side.crashy")) >= 3, 40, "third run")
        rows = side_list()
    finally:
        stop(proc)
    starts = events(counter, "test.side.crashy")
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(starts)]
    # then: restarted twice, waiting at least the backoff (0.5 s, then 1 s) each time
    assert [s["run"] for s in starts[:3]] == [1, 2, 3]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, gaps
    row = rows["test.side.crashy"]
    assert row["restarts"] == 2
    assert "crash number 2" in row["last_error"]
    assert row["state"] == "running"
    print(f"\nrestart gaps {[round(g, 2) for g in gaps[:2]]}")


def test_one_instance_cluster_wide_and_takeover(counter) -> None:
    # given: two sidecars for the same singleton side task
    first = sidecar("test.side.loop")
    second = sidecar("test.side.loop")
    try:
        wait_for(lambda: counter.get("side-beat:test.side.loop"), 30, "the loop to run")
        time.sleep(3)
        # then: only one of them started it
        assert len([e for e in events(counter, "test.side.loop") if e["event"] == "start"]) == 1
        holder = side_list()["test.side.loop"]["holder"]
        victim = first if holder.endswith(f":{_child_pid(first)}") else second
        survivor = second if victim is first else first
        # when: the holder is SIGKILLed, the other takes over once the lease (2 s) runs out
        t0 = time.monotonic()
        stop(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                len([e for e in events(counter, "test.side.loop") if e["event"] == "start"]) == 2
            ),
            30,
            "takeover",
        )
        print(f"\ntakeover after SIGKILL in {time.monotonic() - t0:.2f}s")
        assert side_list()["test.side.loop"]["holder"] != holder
    finally:
        for p in (first, second):
            if p.poll() is None:
                stop(p)
    assert survivor.returncode == 0


def _child_pid(proc: subprocess.Popen[str]) -> int:
    return proc.pid  # `python -m cli.main` is the process itself


def test_not_started_in_serverless_mode() -> None:
    env = dict(cron_cluster.cron_env(), TASKLEDGER_SERVERLESS="true")
    proc = sidecar(env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "serverless" in out
