"""Every Celery door tells the ledger's truth (issue 5), against real worker processes."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeoutError

from jobs import DurableResult, TaskCancelled, errors
from models import Outcome, TaskState
from tests.support import ledger, tasks
from tests.support.services import ROOT, Cluster, Proc, wait_for

pytestmark = pytest.mark.usefixtures("clean")


def signals(counter, task_id) -> list[str]:
    return [s.decode() for s in counter.lrange(f"signals:{task_id}", 0, -1)]


def cancel_reason(task_id) -> str:
    return next(e for e in ledger.events(task_id) if e.event_type == "task_cancelled").payload[
        "reason"
    ]


# -- failures look like failures -------------------------------------------------------------


def test_signals_see_retry_failure_and_success_as_the_ledger_does(cluster: Cluster, counter):
    flaky = tasks.flaky.apply_async((2,), max_retries=3)
    doomed = tasks.boom.apply_async(("disk on fire",), max_retries=1)

    assert flaky.get(timeout=30) == 3
    with pytest.raises(tasks.Boom, match="disk on fire"):  # the handler's own type and message
        doomed.get(timeout=30)

    wait_for(lambda: len(signals(counter, flaky.id)) == 3, 5, "flaky's signals")
    assert signals(counter, flaky.id) == [
        "retry RuntimeError: transient failure on attempt 1",
        "retry RuntimeError: transient failure on attempt 2",
        "success",
    ]
    wait_for(lambda: len(signals(counter, doomed.id)) == 2, 5, "doomed's signals")
    assert signals(counter, doomed.id) == [
        "retry Boom: disk on fire",
        "failure tests.support.tasks.Boom: disk on fire",
    ]
    # and the worker logged it as Celery does, never "succeeded" for a failure
    # (Celery sends task_failure just before it logs the error: wait for the line)
    raised = f"t.boom[{doomed.id}] raised unexpected"
    wait_for(lambda: raised in cluster.workers[0].output(), 5, "the worker's error line")
    assert f"t.boom[{doomed.id}] succeeded" not in cluster.workers[0].output()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def flower(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    env = dict(cluster.env, FLOWER_UNAUTHENTICATED_API="true")
    log = Path(tmp_path_factory.mktemp("flower")) / "flower.log"
    proc = Proc(
        ["flower", "--address=127.0.0.1", f"--port={port}", "--enable_events=True"],
        log,
        env,
        ready=None,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)

    def up() -> bool:
        try:
            return client.get("/healthcheck").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "flower to answer")
    yield client
    client.close()
    proc.stop()


def flower_state(flower: httpx.Client, task_id: str) -> str | None:
    reply = flower.get(f"/api/task/info/{task_id}")
    return reply.json().get("state") if reply.status_code == 200 else None


def test_flower_shows_retry_failure_and_success(cluster: Cluster, flower: httpx.Client) -> None:
    # Flower switches task events on in the workers it watches; wait until it sees tasks.
    def sees_a_task() -> bool:
        probe = tasks.add.delay(1, 1)
        probe.get(timeout=10)
        return wait_ok(lambda: flower_state(flower, probe.id) == "SUCCESS", 3)

    wait_for(sees_a_task, 60, "flower to receive task events")

    retried = tasks.retry_self.apply_async((3.0, 1, 3))  # fails once, retries after 3 s
    failed = tasks.boom.apply_async(("no way",), max_retries=0)
    ledger.wait_state(retried.id, TaskState.RETRY_WAIT, timeout=15)
    wait_for(lambda: flower_state(flower, retried.id) == "RETRY", 5, "flower to say RETRY")
    assert retried.state == "RETRY"  # the result backend agrees

    assert retried.get(timeout=20) == 1
    wait_for(lambda: flower_state(flower, retried.id) == "SUCCESS", 10, "flower SUCCESS")
    wait_for(lambda: flower_state(flower, failed.id) == "FAILURE", 10, "flower FAILURE")
    info = flower.get(f"/api/task/info/{failed.id}").json()
    assert "Boom" in info["exception"] and "no way" in info["exception"]
    # Flower's result view reads the ledger through the result backend
    result = flower.get(f"/api/task/result/{failed.id}").json()
    assert result["state"] == "FAILURE" and "no way" in str(result["result"])
    assert flower.get(f"/api/task/result/{retried.id}").json()["result"] == 1


def wait_ok(predicate, timeout: float) -> bool:
    try:
        wait_for(predicate, timeout, "it")
    except AssertionError:
        return False
    return True


# -- results through Celery's own API ---------------------------------------------------------


def test_async_result_maps_ledger_states_onto_celerys(cluster: Cluster) -> None:
    later = tasks.add.apply_async((1, 2), countdown=60)
    running = tasks.sleep.apply_async((1.5, "slow"))
    failing = tasks.boom.apply_async(("bad",), max_retries=0)

    assert tasks.app.AsyncResult(later.id).state == "PENDING"
    assert tasks.app.AsyncResult(str(uuid.uuid4())).state == "PENDING"  # unknown: as Celery
    ledger.wait_state(running.id, TaskState.RUNNING, timeout=10)
    assert tasks.app.AsyncResult(running.id).state == "STARTED"
    with pytest.raises(CeleryTimeoutError):
        tasks.app.AsyncResult(running.id).get(timeout=0.2)
    assert tasks.app.AsyncResult(running.id).get(timeout=15)["label"] == "slow"
    assert tasks.app.AsyncResult(running.id).state == "SUCCESS"

    plain = tasks.app.AsyncResult(failing.id)
    with pytest.raises(tasks.Boom, match="bad"):
        plain.get(timeout=15)
    assert plain.state == "FAILURE" and isinstance(plain.result, tasks.Boom)
    assert isinstance(failing.get(propagate=False), tasks.Boom)
    assert isinstance(failing, DurableResult) and failing.ledger_state is TaskState.FAILED

    later.revoke()
    assert tasks.app.AsyncResult(later.id).state == "REVOKED"
    with pytest.raises(TaskCancelled):
        later.get(timeout=5)


def test_celery_result_command_reads_the_ledger(cluster: Cluster) -> None:
    handle = tasks.add.delay(20, 22)
    handle.get(timeout=15)

    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "result", handle.id],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


# -- revoke is cancel -------------------------------------------------------------------------


def test_app_control_revoke_cancels_a_queued_task_for_good(cluster: Cluster, counter) -> None:
    handle = tasks.add.apply_async((1, 1), countdown=1)

    tasks.app.control.revoke(handle.id)

    row = ledger.task(handle.id)
    assert row.state is TaskState.CANCELLED
    assert cancel_reason(handle.id) == "revoked via app.control.revoke"
    time.sleep(2.5)  # past its countdown and several sweeps
    assert ledger.task(handle.id).state is TaskState.CANCELLED
    assert counter.get(f"runs:{handle.id}") is None


def test_celery_control_revoke_cancels_running_code_and_frees_the_slot(
    cluster: Cluster, counter
) -> None:
    running = tasks.sleep.apply_async((20, "victim"), session_id="rv", max_retries=3)
    waiting = [tasks.sleep.apply_async((0, f"w{i}"), session_id="rv") for i in range(3)]
    ledger.wait_state(running.id, TaskState.RUNNING, timeout=10)

    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "control", "revoke", running.id],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr

    ledger.wait_state(running.id, TaskState.CANCELLED, timeout=10)
    assert cancel_reason(running.id).startswith("revoked via celery control revoke (")
    for h in waiting:  # the session's slot was freed: the rest of the window ran
        ledger.wait_state(h.id, TaskState.COMPLETED, timeout=20)
    wait_for(lambda: counter.get(f"cancel-seen:{running.id}"), 5, "the handler saw the cancel")
    time.sleep(3.0)  # past a lease (2 s) and the reaper: it is not retried
    row = ledger.task(running.id)
    assert row.state is TaskState.CANCELLED and row.attempts == 1
    assert int(counter.get(f"runs:{running.id}")) == 1


def test_revoke_terminate_is_cancelled_not_worker_lost(cluster: Cluster, counter) -> None:
    handle = tasks.stubborn.apply_async((30,), max_retries=3)  # ignores cancellation
    ledger.wait_state(handle.id, TaskState.RUNNING, timeout=10)

    tasks.app.control.revoke(handle.id, terminate=True)

    assert ledger.task(handle.id).state is TaskState.CANCELLED
    assert cancel_reason(handle.id) == "revoked via app.control.revoke (terminate)"
    time.sleep(4.0)  # lease 2 s, reaper every 0.5 s: a worker_lost retry would show by now
    row = ledger.task(handle.id)
    assert row.state is TaskState.CANCELLED and row.attempts == 1
    assert row.last_outcome != Outcome.WORKER_LOST
    assert "task_scheduled_for_retry" not in ledger.event_types(handle.id)
    assert int(counter.get(f"runs:{handle.id}")) == 1


# -- by name ------------------------------------------------------------------------------------


def test_send_task_by_name_writes_the_row_first(cluster: Cluster) -> None:
    handle = tasks.app.send_task("t.add", args=[2, 3], priority=4)

    assert isinstance(handle, DurableResult)
    assert ledger.task(handle.id).priority == 4  # the row exists as soon as send_task returns
    assert handle.get(timeout=15) == 5
    with pytest.raises(errors.ArgsNotSerializable):
        tasks.app.send_task("t.add", args=[1, 2, 3])
    assert tasks.app.signature("t.add", args=(4, 4)).delay().get(timeout=15) == 8


def test_a_message_with_no_row_is_a_failure_not_a_success(cluster: Cluster, counter) -> None:
    # As another producer would publish it: straight onto the queue, around the ledger.
    ghost = str(uuid.uuid4())
    tasks.app.send_task("t.add", args=[1, 2], task_id=ghost, taskledger_internal=True)

    wait_for(lambda: signals(counter, ghost), 15, "the worker to report the ghost")
    assert signals(counter, ghost)[0].startswith("failure jobs.errors.NoLedgerRow: ")
    assert counter.get(f"runs:{ghost}") is None
    assert f"t.add[{ghost}] succeeded" not in cluster.workers[0].output()


# -- retry from inside ------------------------------------------------------------------------


def test_self_retry_is_honoured_with_countdown_and_the_ledgers_retries(
    cluster: Cluster, counter
) -> None:
    handle = tasks.retry_self.apply_async((1.0, 2, 5))  # two retries, 1 s apart

    assert handle.get(timeout=30) == 2
    said = [int(x) for x in counter.lrange(f"request-retries:{handle.id}", 0, -1)]
    assert said == [0, 1, 2]  # self.request.retries is the ledger's count
    scheduled = [e for e in ledger.events(handle.id) if e.event_type == "task_scheduled_for_retry"]
    assert [e.payload["delay_s"] for e in scheduled] == [1.0, 1.0]  # countdown, not backoff
    assert ledger.task(handle.id).retries == 2

    capped = tasks.retry_self.apply_async((0.1, 5, 1))  # max_retries=1 given to self.retry
    with pytest.raises(ValueError, match="not yet"):
        capped.get(timeout=20)
    assert ledger.task(capped.id).attempts == 2


# -- options Celery users pass ----------------------------------------------------------------


def test_expires_cancels_a_task_still_queued_then(cluster: Cluster, counter) -> None:
    handle = tasks.add.apply_async((1, 1), countdown=1.5, expires=0.5)

    ledger.wait_state(handle.id, TaskState.CANCELLED, timeout=15)
    assert cancel_reason(handle.id) == "expired"
    assert counter.get(f"runs:{handle.id}") is None
    with pytest.raises(TaskCancelled):
        handle.get(timeout=1)


def test_time_limits_map_onto_the_timeout(cluster: Cluster) -> None:
    handle = tasks.sleep.apply_async((5,), soft_time_limit=0.5, time_limit=3, max_retries=0)
    assert ledger.task(handle.id).timeout_s == 0.5
    with pytest.raises(SoftTimeLimitExceeded, match="time limit"):
        handle.get(timeout=15)
    assert tasks.add.apply_async((1, 1), time_limit=7, countdown=60).refresh() is not None
    assert ledger.count() == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_id": "my-job-1"}, "task_id must be a UUID string"),
        ({"soft_time_limit": 5, "time_limit": 2}, "must not be shorter"),
        ({"timeout": 5, "soft_time_limit": 2}, "not both"),
        ({"expires": -1}, "expires must be > 0"),
        ({"expires": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"queue": "nowhere"}, "queue 'nowhere' is not declared"),
        ({"link": tasks.add.s(1)}, "link/link_error"),
    ],
)
def test_bad_celery_options_are_refused_and_write_nothing(options, message) -> None:
    with pytest.raises(errors.InvalidTaskInput, match=message):
        tasks.add.apply_async((1, 2), **options)
    assert ledger.count() == 0 and ledger.count_events() == 0


def test_send_task_to_an_undeclared_queue_is_refused() -> None:
    with pytest.raises(errors.QueueNotDeclared, match="TASKLEDGER_QUEUES"):
        tasks.app.send_task("t.add", args=[1, 2], queue="nowhere")
    assert ledger.count() == 0


def test_apply_and_direct_calls_run_in_process_without_a_row() -> None:
    assert tasks.add(2, 3) == 5
    assert tasks.add.apply((4, 5)).get() == 9
    assert tasks.flaky.apply((0,)).get() == 1  # current_context() works: attempt 1
    assert ledger.count() == 0


# -- beat entries -----------------------------------------------------------------------------


def test_a_beat_entry_for_a_durable_task_enqueues_through_the_ledger(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = dict(cluster.env, TEST_DURABLE_BEAT_ENTRY="1")
    beat = Proc(
        ["beat", "-s", str(tmp_path / "schedule"), "-l", "INFO"],
        tmp_path / "beat.log",
        env,
        ready="beat: Starting",
    )
    try:
        wait_for(lambda: ledger.count() >= 3, 20, "three ticks of the durable entry")
    finally:
        beat.kill()
        _forget_beat_entry("test-durable-tick")
    rows = [ledger.task(h) for h in _ids_of("t.add")]
    for row in rows:
        ledger.wait_state(row.id, TaskState.COMPLETED, timeout=15)
        assert ledger.task(row.id).result == 42
    assert "producer" not in beat.output() and "Traceback" not in beat.output()


def _forget_beat_entry(name: str) -> None:
    """Beat keeps its entries in django-celery-beat's tables, which every beat of the
    suite reads: drop this one and tell the other beats the schedule changed."""
    from sqlalchemy import text

    from models.db import transaction

    with transaction() as conn:
        conn.execute(
            text("DELETE FROM django_celery_beat_periodictask WHERE name = :n"), {"n": name}
        )
        conn.execute(text("UPDATE django_celery_beat_periodictasks SET last_update = now()"))


def _ids_of(name: str) -> list[uuid.UUID]:
    from sqlalchemy import select

    from models import Task
    from models.db import transaction

    with transaction() as conn:
        return list(conn.execute(select(Task.id).where(Task.name == name)).scalars())
