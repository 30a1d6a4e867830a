"""The state machine's table: what may move where."""

from __future__ import annotations

from models.states import (
    FINAL_TASK_STATES,
    GOAL_TRANSITIONS,
    TASK_TRANSITIONS,
    GoalStatus,
    TaskState,
    task_sources,
)


def test_every_state_has_an_entry() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert set(GOAL_TRANSITIONS) == set(GoalStatus)


def test_final_states_lead_nowhere_except_failed_which_can_be_requeued() -> None:
    for state in FINAL_TASK_STATES - {TaskState.FAILED}:
        assert TASK_TRANSITIONS[state] == frozenset()
    assert TASK_TRANSITIONS[TaskState.FAILED] == {TaskState.QUEUED, TaskState.SKIPPED}


def test_only_a_queued_task_can_be_claimed() -> None:
    assert task_sources(TaskState.RUNNING) == {TaskState.QUEUED}


def test_a_retry_goes_back_through_queued() -> None:
    assert task_sources(TaskState.RETRY_WAIT) == {TaskState.RUNNING}
    assert TaskState.QUEUED in TASK_TRANSITIONS[TaskState.RETRY_WAIT]


def test_a_cancelled_task_never_starts_again() -> None:
    assert TASK_TRANSITIONS[TaskState.CANCELLED] == frozenset()
    assert TaskState.CANCELLED not in task_sources(TaskState.RUNNING)


def test_completion_only_from_running() -> None:
    assert task_sources(TaskState.COMPLETED) == {TaskState.RUNNING}
