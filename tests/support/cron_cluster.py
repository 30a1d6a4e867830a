"""Processes for the scheduled-work tests: workers and beats importing tests.support.cron_tasks.

They consume their own queue, so the suite's shared cluster (whose workers do not
know these tasks) never takes their messages, and vice versa.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text

from models.db import transaction
from tests.support import services
from tests.support.services import Proc

QUEUE = "taskledger.crontests"  # = tests.support.cron_tasks.QUEUE
IMPORTS = "tests.support.tasks,tests.support.cron_tasks"
TEST_QUEUES = os.environ.get("TASKLEDGER_QUEUES") or "taskledger"


def declare_queue() -> None:
    """This process enqueues cron runs too (``run_now``): declare the tests' queue here."""
    from models.settings import reset_settings

    os.environ["TASKLEDGER_QUEUES"] = f"{TEST_QUEUES},{QUEUE}"
    reset_settings()


def cron_env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(services.ROOT),
        TASKLEDGER_IMPORTS=IMPORTS,
        TASKLEDGER_QUEUES=f"{TEST_QUEUES},{QUEUE}",
        TASKLEDGER_SIDE_TASK_LEASE_SECONDS="2",
    )


def start_worker(tmp: Path, env: dict[str, str], concurrency: int = 2) -> Proc:
    name = f"cw{uuid.uuid4().hex[:6]}@localhost"
    from models.settings import get_settings

    settings = get_settings()
    # The default and sweeps queues too: beats share the schedule rows (and the sweeps'
    # queue in them) with the suite's own cluster, so these workers must not need their own.
    queues = ",".join(
        dict.fromkeys([QUEUE, settings.default_queue, settings.resolved_sweeps_queue])
    )
    args = ["worker", "-P", "prefork", "-c", str(concurrency), "-Q", queues, "-n", name]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
    proc = Proc(args, tmp / f"{name.split('@')[0]}.log", env, ready="ready.")
    proc.node = name  # type: ignore[attr-defined]
    return proc


def start_beat(tmp: Path, env: dict[str, str], label: str) -> Proc:
    return Proc(
        ["beat", "-s", str(tmp / f"beat-{label}"), "-l", "INFO"],
        tmp / f"beat-{label}.log",
        env,
        ready="beat: Starting",
    )


def truncate() -> None:
    with transaction() as conn:
        conn.execute(text("TRUNCATE cron_runs, cron_pulses, side_tasks"))


def disable_all_crons() -> None:
    from django_celery_beat.models import PeriodicTask

    from beat import django_schedules

    for model in PeriodicTask.objects.all():
        if django_schedules.kind_of(model) == django_schedules.CRON and model.enabled:
            model.enabled = False
            model.save()


def taskledger(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=services.ROOT,
        env=env or cron_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
