"""Retry decisions: pure functions, no I/O (seed 000's ExponentialBackoffStrategy)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.states import Outcome

# Outcomes that retrying cannot fix.
NOT_RETRIED = frozenset({Outcome.PERMANENT})
# The longest backoff whatever the cap says: a datetime cannot hold now + 2**1000 seconds.
MAX_BACKOFF_S = 366 * 24 * 3600.0
DEFAULT_CAP_S = 3600.0  # TASKLEDGER_RETRY_CAP_SECONDS


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """backoff = base * 2**retries, capped, optionally jittered into [50 %, 100 %]."""

    base_s: float = 1.0
    cap_s: float | None = DEFAULT_CAP_S
    jitter: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.base_s, int | float) and math.isfinite(self.base_s)):
            raise ValueError(f"backoff base must be a finite number of seconds; got {self.base_s}")
        if self.base_s <= 0:
            raise ValueError(f"backoff base must be > 0 seconds; got {self.base_s}")
        if self.cap_s is not None and not self.cap_s > 0:
            raise ValueError(f"backoff cap must be > 0 seconds; got {self.cap_s}")

    def delay_s(self, retries: int, rand: Callable[[], float] = random.random) -> float:
        # 2.0 ** n overflows past n = 1023; a float product past that is inf, never an error.
        delay = self.base_s * 2.0 ** min(max(retries, 0), 1023)
        delay = min(delay, self.cap_s or MAX_BACKOFF_S, MAX_BACKOFF_S)
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
