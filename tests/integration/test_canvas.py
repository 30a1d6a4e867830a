"""Celery's canvas over durable tasks: chain -> goal, group -> one atomic batch."""

from __future__ import annotations

import itertools

import pytest
from celery import chain, chord, group
from celery.result import GroupResult

from jobs import errors
from jobs.queries import get_goal, list_by_goal
from models import GoalStatus, TaskState
from models.db import transaction
from tests.support import ledger, tasks
from tests.support.services import Cluster

pytestmark = pytest.mark.usefixtures("clean")


def test_chain_is_a_goal_passing_each_result_on(cluster: Cluster, counter) -> None:
    result = chain(
        tasks.add.s(1, 2),  # 3
        tasks.concat.s("!"),  # concat(3, "!") -> "3!"
        tasks.concat.si("x", "y"),  # immutable: gets nothing from "3!"
        tasks.concat.s("?"),  # concat("xy", "?")
    ).apply_async()

    assert result.get(timeout=30) == "xy?"
    assert result.parent.get(timeout=5) == "xy"
    assert result.parent.parent.get(timeout=5) == "3!"
    row = ledger.task(result.id)
    with transaction() as conn:
        goal = get_goal(conn, row.goal_id)
        steps = list_by_goal(conn, row.goal_id)
    assert goal.status is GoalStatus.COMPLETED
    assert goal.title == "chain: t.add -> t.concat -> t.concat -> t.concat"
    assert [s.result for s in steps] == [3, "3!", "xy", "xy?"]
    assert [s.args for s in steps] == [[1, 2], ["!"], ["x", "y"], ["?"]]  # stored as called
    for before, after in itertools.pairwise(steps):
        assert before.finished_at <= after.started_at  # one after another


def test_group_is_one_atomic_batch_and_its_result_waits_on_the_ledger(cluster: Cluster) -> None:
    result = group(tasks.add.s(1, 1), tasks.add.s(2, 2), tasks.add.s(3, 3)).apply_async()

    assert isinstance(result, GroupResult)
    assert result.get(timeout=30) == [2, 4, 6]
    rows = [ledger.task(r.id) for r in result.results]
    assert len({row.created_at for row in rows}) == 1  # one transaction wrote them all
    assert all(row.state is TaskState.COMPLETED for row in rows)


def test_a_bad_member_rejects_the_whole_group() -> None:
    with pytest.raises(errors.ArgsNotSerializable):
        group(tasks.add.s(1, 1), tasks.add.s(1, object())).apply_async()
    assert ledger.count() == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: chain(tasks.add.s(1, 1), tasks.plain.s()), "t.plain"),
        (lambda: group(tasks.add.s(1, 1), tasks.plain.s(2)), "mixes durable and plain"),
        (lambda: chord([tasks.add.s(1, 1)], tasks.add.s(1)), "chord is not supported"),
    ],
)
def test_unsupported_canvas_raises_naming_the_alternative(make, message) -> None:
    with pytest.raises(errors.UnsupportedCanvas, match=message) as info:
        make().apply_async()
    assert "use" in str(info.value)
    assert ledger.count() == 0
