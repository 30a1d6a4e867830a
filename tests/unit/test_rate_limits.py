"""Rate-limit parsing and slot planning (pure; the enforcement is in the claim statement)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs import errors
from jobs.ratelimit import Rate, configured, earliest_slot, parse_rate

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("5/s", Rate(5, 1.0)),
        ("100/m", Rate(100, 60.0)),
        ("10/h", Rate(10, 3600.0)),
        ("3/10s", Rate(3, 10.0)),
        (" 2 / 0.5 sec ", Rate(2, 0.5)),
    ],
)
def test_parse_rate(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "5", "0/s", "5/d", "x/s", "5/0s", 5])
def test_parse_rate_refuses_nonsense(text: object) -> None:
    with pytest.raises(errors.InvalidOption, match="rate limit"):
        parse_rate(text)


def test_configured_rate_limits() -> None:
    assert configured("a.b=5/s, c=10/m@session") == {
        "a.b": (Rate(5, 1.0), "task"),
        "c": (Rate(10, 60.0), "session"),
    }
    with pytest.raises(errors.InvalidOption, match="scope"):
        configured("a=5/s@user")


def test_earliest_slot_rounds_of_a_period() -> None:
    rate = Rate(5, 1.0)
    # empty log: the first five now, the next five a period later, ...
    assert [earliest_slot([], rate, now=T0, ahead=k) for k in (0, 4, 5, 9, 10)] == [
        T0,
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
    ]
    # a full log: the k-th next start is a period after the start five places before it
    log = [T0 - timedelta(seconds=0.9) + timedelta(seconds=0.2 * i) for i in range(5)]
    assert earliest_slot(log, rate, now=T0, ahead=0) == log[0] + timedelta(seconds=1)
    assert earliest_slot(log, rate, now=T0, ahead=6) == log[1] + timedelta(seconds=2)
