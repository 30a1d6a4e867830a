"""Bad input gets a clear error and writes nothing (real Postgres; no worker needed)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from jobs import InvalidTaskInput, enqueue_many, errors
from jobs.enqueue import enqueue
from models import TaskEvent
from tests.support import ledger, tasks

pytestmark = pytest.mark.usefixtures("clean")


def nothing_written() -> bool:
    return ledger.count() == 0 and ledger.count_events() == 0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: enqueue(tasks.app, "no.such.task"),
            errors.UnknownTask,
            "unknown task 'no.such.task'",
        ),
        (
            lambda: tasks.add.apply_async((1, object())),
            errors.ArgsNotSerializable,
            r"args\[1\] is a object",
        ),
        (
            lambda: tasks.add.apply_async((1, dt.datetime.now())),
            errors.ArgsNotSerializable,
            "datetime",
        ),
        (lambda: tasks.add.apply_async((1, float("nan"))), errors.ArgsNotSerializable, "nan"),
        (
            lambda: tasks.add.apply_async((1,), {"b": {1: 2}}),
            errors.ArgsNotSerializable,
            "non-string key",
        ),
        (
            lambda: tasks.add.apply_async((1, 2, 3)),
            errors.ArgsNotSerializable,
            "too many positional",
        ),
        (lambda: tasks.add.apply_async((1, 2), priority=0), errors.InvalidPriority, "got 0"),
        (lambda: tasks.add.apply_async((1, 2), priority=6), errors.InvalidPriority, "got 6"),
        (lambda: tasks.add.apply_async((1, 2), priority="high"), errors.InvalidPriority, "'high'"),
        (lambda: tasks.add.apply_async((1, 2), countdown=-1), errors.InvalidSchedule, ">= 0"),
        (
            lambda: tasks.add.apply_async((1, 2), eta=dt.datetime(2030, 1, 1)),
            errors.InvalidSchedule,
            "timezone-aware",
        ),
        (
            lambda: tasks.add.apply_async((1, 2), max_retries=-1),
            errors.InvalidOption,
            "max_retries",
        ),
        (lambda: tasks.add.apply_async((1, 2), timeout=0), errors.InvalidOption, "timeout"),
        (
            lambda: tasks.add.apply_async((1, 2), retry_policy={}),
            errors.InvalidOption,
            "unsupported option",
        ),
        (lambda: tasks.add.apply_async((1, 2), task_id="not-a-uuid"), errors.InvalidOption, "UUID"),
        (
            lambda: tasks.add.apply_async(("x" * 2_000_000, 1)),
            errors.PayloadTooLarge,
            "TASKLEDGER_MAX_PAYLOAD_BYTES",
        ),
    ],
)
def test_rejected_with_a_clear_error_and_nothing_written(call, error, message) -> None:
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, InvalidTaskInput)
    assert nothing_written()


def test_a_bad_call_in_a_batch_rejects_the_whole_batch() -> None:
    good = ("t.add", (1, 2), {}, {})
    with pytest.raises(errors.InvalidPriority):
        enqueue_many(tasks.app, [good, good, ("t.add", (1, 2), {}, {"priority": 9})])
    assert nothing_written()


def test_duplicate_task_id_is_refused_and_the_first_row_kept() -> None:
    task_id = uuid.uuid4()
    tasks.add.apply_async((1, 2), task_id=str(task_id), countdown=60)
    with pytest.raises(errors.TaskAlreadyExists):
        enqueue_many(
            tasks.app, [("t.add", (3, 4), {}, {}), ("t.add", (5, 6), {}, {"task_id": str(task_id)})]
        )
    assert ledger.count() == 1
    assert ledger.task(task_id).args == [1, 2]
    assert ledger.count_events(TaskEvent.event_type == "task_created") == 1
