"""``taskledger pulse`` (serverless): due cron tasks start exactly once per slot, however
many pulses run at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models import CronRun
from models.db import transaction
from tests.support import cron_cluster, services
from tests.support.services import wait_for

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture(scope="module")
def worker(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One worker and no beat: the pulse is the only thing that fires."""
    from beat import django_setup

    django_setup.migrate()
    cron_cluster.declare_queue()
    import tests.support.cron_tasks  # noqa: F401
    from beat import django_schedules
    from beat.cron import validate_all

    django_schedules.sync(None, validate_all())  # what a beat, the CLI or a pulse does first

    tmp = Path(tmp_path_factory.mktemp("pulse"))
    proc = cron_cluster.start_worker(tmp, cron_cluster.cron_env())
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _fresh(worker: Any) -> Iterator[None]:
    cron_cluster.truncate()
    cron_cluster.disable_all_crons()
    yield
    cron_cluster.disable_all_crons()


def _pulse(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "pulse", "--json", *extra],
        cwd=services.ROOT,
        env=cron_cluster.cron_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_five_concurrent_pulses_start_each_due_task_once(counter) -> None:
    from beat import django_schedules

    # given: two cron tasks due every minute, one every five minutes in Paris time
    for name in ("test.minutely", "test.tick"):
        django_schedules.set_enabled(name, True)
    django_schedules.set_schedule("test.tick", "* * * * *")
    # when: five pulses run at once (and a sixth right after, same minute)
    procs = [_pulse() for _ in range(5)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    # then: each due task started exactly once across all pulses; the others saw the run key
    started = [r["name"] for rep in reports for r in rep["ran"]]
    already = [r["name"] for rep in reports for r in rep["already_fired"]]
    assert sorted(started) == ["test.minutely", "test.tick"]
    slots = {r["scheduled_at"] for rep in reports for r in rep["ran"] + rep["already_fired"]}
    if len(slots) == 2:  # the five straddled a minute boundary: a second slot is legitimate
        pytest.skip("pulses straddled a minute boundary; rerun")
    assert len(already) == 2 * 4
    with transaction() as conn:
        rows = conn.execute(select(CronRun.name, CronRun.task_id)).all()
    assert sorted(r.name for r in rows) == ["test.minutely", "test.tick"]
    wait_for(lambda: counter.llen("minutely") == 1 and counter.llen("tick") == 1, 30, "runs")
    # then: the disabled ones were not touched, and pulse --status shows the last pulse
    assert not any(r["name"] == "test.slow" for rep in reports for r in rep["ran"])
    status = cron_cluster.taskledger("pulse", "--status", "--json")
    assert status.returncode == 0, status.stderr
    last = json.loads(status.stdout)
    assert set(last) == {"host", "started_at", "finished_at", "outcome"}
    assert set(last["outcome"]) >= {"ran", "skipped", "already_fired", "waiting", "not_due"}
    # when: another pulse in the same minute
    again = _pulse()
    out, _ = again.communicate(timeout=120)
    report = json.loads(out)
    assert report["ran"] == []
    assert sorted(r["name"] for r in report["already_fired"]) == ["test.minutely", "test.tick"]
    assert counter.llen("minutely") == 1


def test_pulse_records_overlap_skips(counter) -> None:
    from beat import django_schedules
    from beat.pulse import pulse, run_now

    # given: test.upstream is running (2 s) when its minute comes up in a pulse
    django_schedules.set_config("test.upstream", {"seconds": 2})
    django_schedules.set_enabled("test.upstream", True)
    first = run_now("test.upstream")
    assert first.status == "started"
    # when
    report = pulse()
    # then: the pulse reports the skip with its reason
    [skip] = [s for s in report.skipped if s["name"] == "test.upstream"]
    assert skip["reason"] == "previous_instance_running"
