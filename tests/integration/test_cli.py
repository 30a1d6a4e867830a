"""The CLI as a newcomer meets it: fast to start, one-line errors, readable views, JSON.

Views run against the suite's servers (as external URLs) and its cluster; the
"nothing running" cases use an empty home and no URLs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from jobs import operations
from models import GoalStatus
from tests.support.embedded_up import user_env
from tests.support.services import ROOT, Cluster, wait_for

TASKLEDGER = str(Path(sys.executable).parent / "taskledger")


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKLEDGER, *args],
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- nothing running ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["tasks"], ["goals"], ["stats"], ["demo"], ["show", str(uuid.uuid4())]]
)
def test_without_a_running_stack_one_line_says_how_to_start_one(
    args: list[str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = cli(*args, env=user_env(home), cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert "taskledger up" in output and str(home) in output
    assert not home.exists()  # asking leaves no empty folder behind


def test_delay_without_a_stack_raises_the_one_line_message(tmp_path: Path) -> None:
    script = tmp_path / "producer.py"
    script.write_text(
        textwrap.dedent(
            """
            from tests.support.tasks import add
            try:
                add.delay(1, 2)
            except Exception as exc:
                print(type(exc).__name__)
                print(exc)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=user_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    name, message = result.stdout.strip().splitlines()
    assert name == "NotConfigured", result.stdout + result.stderr
    assert "start one with `taskledger up`" in message


# -- start time -------------------------------------------------------------------------


def _best_of(times: int, *args: str, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(times):
        began = time.perf_counter()
        result = cli(*args, env=env)
        best = min(best, time.perf_counter() - began)
        assert result.returncode == 0, result.stdout + result.stderr
    return best


def test_cli_starts_fast_and_imports_nothing_heavy(database: str) -> None:
    # the structure: the command modules import no domain code until a command runs
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, cli.main; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(probe.stdout.split())
    heavy = {"sqlalchemy", "celery", "jobs", "models", "pydantic", "psycopg", "fastapi", "redis"}
    assert not heavy & loaded, heavy & loaded
    # the numbers
    help_s = _best_of(3, "--help", env=dict(os.environ))
    tasks_s = _best_of(3, "tasks", "--limit", "5", env=dict(os.environ))
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cli.main"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stderr.splitlines()[-1]
    print(
        f"\nCLI start: `taskledger --help` {help_s:.2f} s, `taskledger tasks` {tasks_s:.2f} s "
        f"(best of 3); cli.main import: {importtime.split('|')[1].strip()} us"
    )
    assert help_s < 1.0  # generous: ~0.2 s measured on a quiet 2-core machine


# -- views on the suite's servers ---------------------------------------------------------


@pytest.fixture()
def finished_goal(cluster: Cluster, clean: None) -> uuid.UUID:
    from workers.app import app

    goal_id = operations.create_goal(
        app,
        title="add twice",
        user_id="cli-test",
        steps=[("t.add", (1, 2), {}, {}), ("t.add", (), {"a": 3, "b": 4}, {})],
    )

    def done() -> bool:
        from jobs import queries
        from models.db import transaction

        with transaction() as conn:
            return queries.get_goal(conn, goal_id).status is GoalStatus.COMPLETED

    wait_for(done, 60, "the goal to complete")
    return goal_id


def test_goals_goal_and_show_in_json(finished_goal: uuid.UUID) -> None:
    goals = json.loads(cli("goals", "--json").stdout)
    assert [g["id"] for g in goals] == [str(finished_goal)]
    goal = json.loads(cli("goal", str(finished_goal), "--json", "--events").stdout)
    assert goal["status"] == "completed"
    assert [(s["step_index"], s["state"], s["result"]) for s in goal["steps"]] == [
        (0, "completed", 3),
        (1, "completed", 7),
    ]
    assert goal["events"][0]["event_type"] == "goal_created"
    step = goal["steps"][1]["id"]
    task = json.loads(cli("show", step, "--json").stdout)
    assert task["kwargs"] == {"a": 3, "b": 4} and task["result"] == 7
    assert task["started_at"] and task["finished_at"] and task["created_at"]
    assert [e["event_type"] for e in task["events"]][-1] == "task_completed"
    listed = json.loads(cli("tasks", "--json").stdout)
    assert {t["id"] for t in listed} == {s["id"] for s in goal["steps"]}


def test_tables_keep_full_ids_on_a_narrow_terminal(finished_goal: uuid.UUID) -> None:
    narrow = dict(os.environ, COLUMNS="60")
    steps = json.loads(cli("goal", str(finished_goal), "--json").stdout)["steps"]
    for args in (["tasks"], ["goal", str(finished_goal)], ["tasks", "--wide"]):
        out = cli(*args, env=narrow).stdout
        for s in steps:
            assert s["id"] in out, (args, out)
    shown = cli("show", steps[0]["id"], env=narrow).stdout
    assert "task_completed" in shown and "args" in shown and "result" in shown
    assert str(finished_goal) in cli("goals", env=narrow).stdout


def test_bad_input_is_one_line(finished_goal: uuid.UUID) -> None:
    as_task = cli("show", str(finished_goal))
    assert as_task.returncode != 0
    assert as_task.stdout.strip() == (
        f"error: no task {finished_goal}; it is a goal: taskledger goal {finished_goal}"
    )
    bad_state = cli("tasks", "--state", "bogus")
    assert bad_state.returncode != 0 and len(bad_state.stdout.strip().splitlines()) == 1
    assert "queued" in bad_state.stdout
    missing = cli("goal", str(uuid.uuid4()))
    assert missing.returncode != 0 and missing.stdout.startswith("error: no goal")
