"""The approval inbox: approve, approve with changed args, deny, twice, expiry, listing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jobs import approvals, errors
from jobs.enqueue import enqueue
from models import TaskState
from models.db import transaction
from tests.integration.safety_helpers import settings_env, use_policy
from tests.support import ledger
from tests.support.services import Cluster
from workers.app import app

__all__ = ["settings_env"]

POLICY = """
[[rule]]
name = "never-huge"
task = "s.pay"
when = "amount > 100000"
action = "block"

[[rule]]
name = "big-payments"
task = "s.pay"
when = "amount > 100"
action = "require_approval"
reason = "a person checks big payments"
"""


@pytest.fixture()
def gated(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    use_policy(settings_env, tmp_path, POLICY.replace("100000", "1000000"))
    return settings_env


def _pending(amount: int, **options: object) -> str:
    handle = enqueue(app, "s.pay", [amount], {"to": "bob"}, **options)
    assert ledger.task(handle.id).state is TaskState.PENDING_APPROVAL
    return handle.id


def test_approve_runs_it(cluster: Cluster, clean: None, gated: object, counter) -> None:
    task_id = _pending(500)
    row = approvals.approve(app, ledger.task(task_id).id, by="carol")
    assert row.state is TaskState.QUEUED
    done = ledger.wait_state(task_id, TaskState.COMPLETED)
    assert done.result == {"paid": 500, "to": "bob"}
    approved = [e for e in ledger.events(task_id) if e.event_type == "task_approved"]
    assert approved[0].payload["by"] == "carol" and approved[0].payload["changes"] == {}


def test_approve_with_changed_args_handler_sees_them(
    cluster: Cluster, clean: None, gated: object, counter
) -> None:
    task_id = _pending(500)
    approvals.approve(app, ledger.task(task_id).id, by="carol", args=[150], kwargs={"to": "dan"})
    ledger.wait_state(task_id, TaskState.COMPLETED)
    assert json.loads(counter.get(f"seen:{task_id}")) == {"amount": 150, "to": "dan"}
    changes = next(
        e.payload["changes"] for e in ledger.events(task_id) if e.event_type == "task_approved"
    )
    assert changes == {
        "args[0]": {"before": 500, "after": 150},
        "to": {"before": "bob", "after": "dan"},
    }


def test_changed_args_are_validated_and_rechecked(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_policy(settings_env, tmp_path, POLICY)
    task_id = ledger.task(_pending(500)).id
    with pytest.raises(errors.ArgsNotSerializable):
        approvals.approve(app, task_id, by="carol", args=[1, 2, 3, 4])  # wrong signature
    with pytest.raises(errors.PolicyBlocked, match="never-huge"):
        approvals.approve(app, task_id, by="carol", args=[200000])
    # nothing was written: still pending, with its original arguments
    row = ledger.task(task_id)
    assert row.state is TaskState.PENDING_APPROVAL and row.args == [500]


def test_deny_cancels(cluster: Cluster, clean: None, gated: object, counter) -> None:
    task_id = _pending(500)
    row = approvals.deny(app, ledger.task(task_id).id, by="carol", reason="not this month")
    assert row.state is TaskState.CANCELLED and "not this month" in row.last_error
    time.sleep(1.0)
    assert counter.get(f"runs:{task_id}") is None
    denied = [e.payload for e in ledger.events(task_id) if e.event_type == "task_denied"]
    assert denied == [{"by": "carol", "reason": "not this month"}]


def test_double_approve_and_not_pending_are_clear_errors(
    cluster: Cluster, clean: None, gated: object
) -> None:
    task_id = ledger.task(_pending(500)).id
    approvals.approve(app, task_id, by="carol")
    with pytest.raises(errors.NotPendingApproval, match="not pending_approval"):
        approvals.approve(app, task_id, by="carol")
    with pytest.raises(errors.NotPendingApproval):
        approvals.deny(app, task_id, by="carol")
    small = enqueue(app, "s.pay", [5])
    with pytest.raises(errors.NotPendingApproval):
        approvals.approve(app, small.uuid, by="carol")
    import uuid

    with pytest.raises(errors.NotFound):
        approvals.approve(app, uuid.uuid4(), by="carol")


def test_listing_newest_first_with_count_and_user_scope(
    cluster: Cluster, clean: None, gated: object
) -> None:
    ids = [_pending(200 + i, user_id="alice" if i % 2 else "bob") for i in range(5)]
    with transaction() as conn:
        page1 = approvals.list_pending(conn, limit=3)
        page2 = approvals.list_pending(conn, limit=3, cursor=page1[-1].id)
        assert [str(r.id) for r in page1 + page2] == list(reversed(ids))
        assert approvals.pending_count(conn) == 5
        assert approvals.pending_count(conn, user_id="alice") == 2
        alice = approvals.list_pending(conn, user_id="alice")
        assert {r.user_id for r in alice} == {"alice"}


def test_expiry_cancels_with_reason(
    cluster: Cluster, clean: None, gated: pytest.MonkeyPatch
) -> None:
    old = _pending(500)
    time.sleep(1.2)
    fresh = _pending(600)
    gated.setenv("TASKLEDGER_APPROVAL_EXPIRY_SECONDS", "1")
    from models.settings import reset_settings

    reset_settings()
    # when: the expiry sweep runs (beat runs the same function every few seconds)
    assert approvals.expire_due(app) == 1
    # then
    row = ledger.task(old)
    assert row.state is TaskState.CANCELLED and row.last_error == "approval_expired"
    assert ledger.task(fresh).state is TaskState.PENDING_APPROVAL
    reasons = [e.payload.get("reason") for e in ledger.events(old)]
    assert "approval_expired" in reasons
