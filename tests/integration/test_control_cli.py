"""The agent-safety CLI: help, one-line errors for bad ids, and the commands doing their job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobs.enqueue import enqueue
from models import TaskState
from tests.integration.safety_helpers import settings_env, use_policy
from tests.support import ledger, services
from tests.support.services import Cluster
from workers.app import app

__all__ = ["settings_env"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **services.TEST_ENV, PYTHONPATH=str(services.ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=services.ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [["approvals"], ["approve"], ["deny"], ["pause"], ["resume"], ["cleanup"], ["sessions"]],
)
def test_help(command: list[str]) -> None:
    done = cli(*command, "--help")
    assert done.returncode == 0 and "Usage" in done.stdout


def test_bad_ids_are_one_line_errors(database: str) -> None:
    for args in (["approve", "nope"], ["deny", "nope"]):
        done = cli(*args)
        assert done.returncode != 0 and "Traceback" not in done.stderr
    done = cli("approve", str(uuid.uuid4()))
    assert done.returncode != 0 and "no task" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_approve_deny_pause_cleanup_sessions(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = use_policy(
        settings_env,
        tmp_path,
        '[[rule]]\ntask = "s.pay"\nwhen = "amount > 100"\naction = "require_approval"\n',
    )
    env = {"TASKLEDGER_POLICY_FILE": str(path)}
    a = enqueue(app, "s.pay", [500], session_id="cli-s", user_id="ann")
    b = enqueue(app, "s.pay", [600], session_id="cli-s", user_id="ann")
    listed = json.loads(cli("approvals", "--json", env=env).stdout)
    assert listed["count"] == 2 and [t["id"] for t in listed["tasks"]] == [b.id, a.id]
    done = cli("approve", a.id, "--args", "[150]", "--by", "carol", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ledger.wait_state(a.id, TaskState.COMPLETED).result == {"paid": 150, "to": ""}
    done = cli("approve", a.id, env=env)
    assert done.returncode != 0 and "not pending_approval" in done.stdout
    assert cli("deny", b.id, "--reason", "no", env=env).returncode == 0
    assert ledger.task(b.id).state is TaskState.CANCELLED
    assert cli("approve", "x", "--args", "{bad").returncode != 0
    assert "paused" in cli("pause", "session", "cli-s").stdout
    sessions = json.loads(cli("sessions", "--json", "--user", "ann").stdout)["sessions"]
    assert sessions[0]["id"] == "cli-s" and sessions[0]["paused"] is True
    assert cli("resume", "session", "cli-s").returncode == 0
    out = cli("cleanup", "--dry-run", "--days", "0").stdout
    assert "would delete 2 task(s)" in out
