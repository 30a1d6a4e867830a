"""Agent safety's periodic work as Celery tasks: retention cleanup and approval expiry.

Importing this module (the worker and beat do, through the app's ``imports``) also
loads the policy file, so a process with a bad ``TASKLEDGER_POLICY_FILE`` refuses
to start, naming the line and the reason.
"""

from __future__ import annotations

import logging

from beat.safety_schedule import EXPIRE_APPROVALS, RETENTION
from jobs import approvals, policy, retention
from workers.app import app

log = logging.getLogger(__name__)

policy.check_at_start()


@app.task(name=RETENTION, ignore_result=True)
def retention_sweep() -> dict[str, int]:
    """The 03:00 cleanup: finished tasks older than TASKLEDGER_RETENTION_DAYS, in batches."""
    return retention.cleanup_configured()


@app.task(name=EXPIRE_APPROVALS, ignore_result=True)
def expire_approvals_sweep() -> int:
    """Pending approvals older than TASKLEDGER_APPROVAL_EXPIRY_SECONDS -> cancelled."""
    expired = approvals.expire_due(app)
    if expired:
        log.info("cancelled %d pending approval(s) that expired", expired)
    return expired
