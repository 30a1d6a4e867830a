"""Backoff and retry decisions are pure: tested in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.retry import RetryPolicy, decide
from models import Outcome

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retries", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 1024.0)]
)
def test_backoff_is_base_times_two_to_the_retries(retries: int, delay: float) -> None:
    assert RetryPolicy(base_s=1.0).delay_s(retries) == delay


def test_cap_bounds_the_delay() -> None:
    assert RetryPolicy(base_s=30, cap_s=60).delay_s(5) == 60


def test_jitter_stays_between_half_and_full() -> None:
    policy = RetryPolicy(base_s=10, jitter=True)
    assert policy.delay_s(1, rand=lambda: 0.0) == 10.0
    assert policy.delay_s(1, rand=lambda: 1.0) == 20.0


def test_retry_is_scheduled_while_retries_last() -> None:
    retry = decide(RetryPolicy(base_s=2), retries=1, max_retries=3, outcome=Outcome.ERROR, now=NOW)
    assert retry is not None
    assert retry.backoff_until == NOW + timedelta(seconds=4)


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.TIMEOUT, Outcome.WORKER_LOST])
def test_no_retry_once_retries_are_exhausted(outcome: Outcome) -> None:
    assert decide(RetryPolicy(), retries=3, max_retries=3, outcome=outcome, now=NOW) is None


def test_permanent_errors_never_retry() -> None:
    assert (
        decide(RetryPolicy(), retries=0, max_retries=3, outcome=Outcome.PERMANENT, now=NOW) is None
    )


def test_max_retries_zero_means_one_attempt() -> None:
    assert decide(RetryPolicy(), retries=0, max_retries=0, outcome=Outcome.ERROR, now=NOW) is None


@pytest.mark.parametrize("retries", [1023, 1024, 5000, 10**6])
def test_backoff_never_overflows_and_the_default_cap_holds(retries: int) -> None:
    # 1.0 * 2**5000 is an OverflowError as a float, and now + that a datetime overflow.
    assert RetryPolicy(base_s=1.0).delay_s(retries) == 3600.0
    retry = decide(
        RetryPolicy(), retries=retries, max_retries=10**7, outcome=Outcome.ERROR, now=NOW
    )
    assert retry is not None and retry.backoff_until == NOW + timedelta(hours=1)


def test_even_without_a_cap_a_backoff_fits_in_a_datetime() -> None:
    assert RetryPolicy(base_s=1.0, cap_s=None).delay_s(10_000) == 366 * 24 * 3600.0


@pytest.mark.parametrize(
    "bad", [{"base_s": 0}, {"base_s": -1}, {"cap_s": 0}, {"base_s": float("inf")}]
)
def test_a_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**bad)
