"""The CLI's read-only commands stay light: no SQLAlchemy, ORM tables, Celery, Kombu or Django.

Start time is what issue 12 asks for (README: read commands answer in 0.3 to 0.4 s), but a
timing assertion would be flaky on a shared machine; what made them slow was what they
imported, and that is exact. Each command runs for real against a database address
where nothing listens, so the whole path up to the connection is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "sqlalchemy",
    "celery",
    "kombu",
    "redis",
    "django",
    "jobs.queries",  # the domain's reads: what cli.reads stands in for
    "jobs.tasklists.store",
    "jobs.cron_runs",  # and the schedule's: what cli.cron_reads stands in for
    "beat.django_schedules",
    "jobs.tasklists.status",
    "models.base",
    "models.task",
    "pydantic_settings",
)
PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["taskledger", *json.loads(sys.argv[1])]
from cli.main import main
main()
"""
READ_COMMANDS = [
    ["tasks"],
    ["tasks", "--state", "queued", "--json"],
    ["peek"],
    ["stats"],
    ["show", str(uuid.uuid4())],
    ["goals"],
    ["goal", str(uuid.uuid4()), "--events"],
    ["sessions"],
    ["approvals"],
    ["lists"],
    ["lists", "status", "no-such-list.md"],
    ["cron", "list"],
    ["cron", "history", "nightly.report", "--json"],
    ["cron", "stats"],
    ["pulse", "--status"],
]
TASK_LIST = ROOT / "examples" / "tasks.md"


def _run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.update(
        TASKLEDGER_HOME=str(tmp_path / "home"),
        # a socket folder with no server in it: the command gets as far as connecting
        TASKLEDGER_DATABASE_URL=f"postgresql://nobody@/none?host={tmp_path}",
        TASKLEDGER_BROKER_URL="redis://127.0.0.1:1/0",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return result, set(json.loads(line.removeprefix("MODULES ")))


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_commands_import_no_orm_and_no_celery(args: list[str], tmp_path: Path) -> None:
    result, loaded = _run(args, tmp_path)
    # it really ran: reached the database and said in one line that nobody answered
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith("error: cannot reach PostgreSQL"), result.stdout
    assert "psycopg" in loaded and "cli.reads" in loaded
    assert _heavy(loaded) == []


def test_the_probe_sees_heavy_imports_where_there_are_some(tmp_path: Path) -> None:
    # `peek`'s neighbour `cancel` writes through jobs and Celery: the probe must notice
    result, loaded = _run(["cancel", str(uuid.uuid4())], tmp_path)
    assert result.returncode != 0
    assert {"sqlalchemy.orm", "celery"} <= set(_heavy(loaded))


def test_graph_falls_back_to_the_file_without_a_database_and_stays_light(
    tmp_path: Path,
) -> None:
    result, loaded = _run(["lists", "graph", str(TASK_LIST)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("flowchart") and "NOTE_001" in result.stdout
    assert "psycopg" in loaded and _heavy(loaded) == []
