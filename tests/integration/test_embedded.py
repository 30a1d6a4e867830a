"""The embedded default: no servers, one command, the demo runs end to end."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.services import ROOT, wait_for


def embedded_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.update(TASKLEDGER_HOME=str(home), COLUMNS="160", PYTHONPATH=str(ROOT))
    return env


def taskledger(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli.main import main; main()", *args]


def test_demo_runs_end_to_end_with_no_servers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        taskledger("demo"),
        cwd=tmp_path,
        env=embedded_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "task_scheduled_for_retry" in done.stdout
    assert "goal_completed" in done.stdout
    with sqlite3.connect(home / "taskledger.db") as db:
        (status,) = db.execute("SELECT status FROM goals").fetchone()
        steps = db.execute("SELECT name, state, attempts FROM tasks ORDER BY step_index").fetchall()
    assert status == "completed"
    assert steps == [
        ("demo.plan", "completed", 1),
        ("demo.fetch", "completed", 3),
        ("demo.summarise", "completed", 1),
    ]


def test_up_serves_a_demo_from_another_terminal_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = embedded_env(home)
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115
    up = subprocess.Popen(
        taskledger("up"), cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        wait_for(
            lambda: "worker and beat are up" in (tmp_path / "up.log").read_text(),
            90,
            "taskledger up",
        )
        demo = subprocess.run(
            taskledger("demo"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "starting an embedded worker" not in demo.stdout  # it used the running one
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
        log.close()
    assert up.returncode == 0
    assert "stopped." in (tmp_path / "up.log").read_text()
    assert not (home / "up.pid").exists()
