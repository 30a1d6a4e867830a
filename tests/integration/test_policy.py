"""Policy at enqueue: allow, block, require_approval, redact; a bad policy file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import errors, policy
from jobs.enqueue import enqueue
from jobs.policy_rules import Action
from models import TaskState
from tests.integration.safety_helpers import settings_env, tables_containing, use_policy
from tests.support import ledger, services
from tests.support.services import Cluster
from workers.app import app

__all__ = ["settings_env"]

POLICY = """
[[rule]]
name = "no-transfers-to-mallory"
task = "s.pay"
when = 'to == "mallory"'
action = "block"
reason = "mallory is a known fraudster"

[[rule]]
name = "big-payments"
task = "s.pay"
when = "amount > 100"
action = "require_approval"
reason = "payments over 100 need a person"

[[rule]]
name = "hide-keys"
task = "s.login"
action = "redact"
fields = ["api_key", "options.token"]
"""


def _decision_events(task_id: object) -> list[dict]:
    return [dict(e.payload) for e in ledger.events(task_id) if e.event_type == "policy_decision"]


def test_allow_runs_and_is_audited(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given: a policy whose rules do not match a small payment
    use_policy(settings_env, tmp_path, POLICY)
    # when
    handle = enqueue(app, "s.pay", [5], {"to": "bob"})
    # then: it runs, and the decision (no rule: allow) is in the audit trail
    assert handle.get(timeout=30) == {"paid": 5, "to": "bob"}
    assert _decision_events(handle.id) == [{"action": "allow", "rule": None, "state": "queued"}]


def test_block_fails_at_once_and_never_runs(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path, counter
) -> None:
    use_policy(settings_env, tmp_path, POLICY)
    with pytest.raises(errors.PolicyBlocked) as caught:
        enqueue(app, "s.pay", [5], {"to": "mallory"})
    assert "no-transfers-to-mallory" in str(caught.value)
    assert "mallory is a known fraudster" in str(caught.value)
    task_id = caught.value.task_ids[0]
    row = ledger.task(task_id)
    assert row.state is TaskState.FAILED and row.last_outcome == "blocked"
    assert "no-transfers-to-mallory" in row.last_error
    assert row.policy_decision["rule"] == "no-transfers-to-mallory"
    assert _decision_events(task_id)[0]["action"] == "block"
    time.sleep(1.5)  # a worker and the sweeps had every chance to start it
    assert counter.get(f"runs:{task_id}") is None
    assert ledger.task(task_id).state is TaskState.FAILED


def test_require_approval_waits(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path, counter
) -> None:
    use_policy(settings_env, tmp_path, POLICY)
    handle = enqueue(app, "s.pay", [500], {"to": "bob"})
    time.sleep(1.5)
    row = ledger.task(handle.id)
    assert row.state is TaskState.PENDING_APPROVAL
    assert counter.get(f"runs:{handle.id}") is None
    assert _decision_events(handle.id)[0]["rule"] == "big-payments"


def test_python_rule_and_positional_argument(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch
) -> None:
    # given: a rule registered from Python; `amount` passed by position still matches
    policy.register_rule(name="tiny", task="s.*", when="amount < 1", action=Action.BLOCK)
    with pytest.raises(errors.PolicyBlocked, match="tiny"):
        enqueue(app, "s.pay", [0])


def test_redacted_values_are_stored_nowhere(
    cluster: Cluster, clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path, counter
) -> None:
    use_policy(settings_env, tmp_path, POLICY)
    secret, token = "sk-live-9f8e7d6c5b4a", "tok-0a1b2c3d4e"
    # when: the key is passed by position and the token inside a dict
    handle = enqueue(app, "s.login", ["alice", secret], {"options": {"token": token, "n": 1}})
    assert handle.get(timeout=30) == len("[REDACTED]")
    # then: the handler saw the redacted value; the row records which fields
    seen = counter.get(f"seen:{handle.id}").decode()
    assert secret not in seen and token not in seen and "[REDACTED]" in seen
    row = ledger.task(handle.id)
    assert row.policy_decision["redacted"] == ["api_key", "options.token"]
    # the whole database, every table and column as text: absent
    assert tables_containing(secret) == [] and tables_containing(token) == []
    assert tables_containing("alice") != []  # the search itself works
    # the worker's log (which logs the arguments it got) and beat's: absent
    logs = "".join(
        p.output() for p in [*cluster.workers, cluster.beat, cluster.sweeper] if p is not None
    )
    assert handle.id in logs or "login called" in logs
    assert secret not in logs and token not in logs


def test_bad_policy_file_is_refused(
    clean: None, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\ntask = "s.pay"\nwhen = "amount >> 3"\naction = "block"\n')
    settings_env.setenv("TASKLEDGER_POLICY_FILE", str(bad))
    from models.settings import reset_settings

    reset_settings()
    policy.reset()
    # an enqueue refuses, naming the line and the reason, and writes nothing
    with pytest.raises(errors.InvalidPolicy, match=r"line 3: when = 'amount >> 3'"):
        enqueue(app, "s.pay", [1])
    # a worker refuses to start
    env = dict(services.TEST_ENV, TASKLEDGER_POLICY_FILE=str(bad), PYTHONPATH=str(services.ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-l", "INFO", "-P", "solo"],
        cwd=services.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "line 3" in done.stdout + done.stderr and "amount >> 3" in done.stdout + done.stderr
