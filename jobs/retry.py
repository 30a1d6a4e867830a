"""Retry decisions: pure functions, no I/O (seed 000's ExponentialBackoffStrategy)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.states import Outcome

# Outcomes that retrying cannot fix.
NOT_RETRIED = frozenset({Outcome.PERMANENT})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """backoff = base * 2**retries, capped, optionally jittered into [50 %, 100 %]."""

    base_s: float = 1.0
    cap_s: float | None = None
    jitter: bool = False

    def delay_s(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        delay = self.base_s * 2**retries
        if self.cap_s is not None:
            delay = min(delay, self.cap_s)
        if self.jitter:
            delay *= 0.5 + rand() / 2
        return delay


@dataclass(frozen=True)
class RetryAt:
    backoff_until: datetime
    delay_s: float


def decide(
    policy: RetryPolicy,
    *,
    retries: int,
    max_retries: int,
    outcome: Outcome,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> RetryAt | None:
    """When to try again, or None when the task has failed for good."""
    if outcome in NOT_RETRIED or retries >= max_retries:
        return None
    delay = policy.delay_s(retries, rand)
    return RetryAt(backoff_until=now + timedelta(seconds=delay), delay_s=delay)
