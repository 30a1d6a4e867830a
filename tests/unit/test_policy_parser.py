"""The policy's `when` parser and rule file loader: pure logic, no database."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import InvalidPolicy
from jobs.policy import load_file, redact
from jobs.policy_rules import Action, ConditionError, parse_condition


@pytest.mark.parametrize(
    ("text", "arguments", "args", "expected"),
    [
        ("amount > 100", {"amount": 101}, [], True),
        ("amount > 100", {"amount": 100}, [], False),
        ("amount >= 100", {"amount": 100}, [], True),
        ("amount < 1.5", {"amount": 1.25}, [], True),
        ("amount > 100", {}, [], False),  # a missing argument never matches
        ("amount > 100", {"amount": "lots"}, [], False),  # not comparable: no match
        ('to == "boss@example.com"', {"to": "boss@example.com"}, [], True),
        ("to != 'x'", {"to": "y"}, [], True),
        ('region in ["eu", "us"]', {"region": "us"}, [], True),
        ('region not in ["eu", "us"]', {"region": "us"}, [], False),
        ("urgent == true", {"urgent": True}, [], True),
        ("note == null", {"note": None}, [], True),
        ("args[1] >= 3", {}, ["a", 3], True),
        ("args[5] >= 3", {}, ["a", 3], False),
        ('recipient.domain == "example.com"', {"recipient": {"domain": "example.com"}}, [], True),
        ("a > 1 and b > 1", {"a": 2, "b": 0}, [], False),
        ("a > 1 and b > 1 or c == 1", {"a": 0, "c": 1}, [], True),  # and binds tighter
    ],
)
def test_conditions(text: str, arguments: dict, args: list, expected: bool) -> None:
    assert parse_condition(text).holds(arguments, args) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("amount >", "expected a value"),
        ("amount 100", "expected an operator"),
        ("> 100", "expected an argument name"),
        ("amount > 100 and", "ends after"),
        ("amount in 3", "needs a list"),
        ("amount > true", "compares with a number"),
        ("__import__('os').system('x')", "unexpected"),
        ("amount > 1; drop", "unexpected"),
        ("amount > [1", "closing"),
    ],
)
def test_bad_conditions_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ConditionError, match=fragment):
        parse_condition(text)


def test_file_rules_in_order(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        """
[[rule]]
name = "big"
task = "pay.*"
when = "amount > 100"
action = "require_approval"
reason = "big payments need a person"

[[rule]]
task = "mail.send"
action = "redact"
fields = ["api_key", "body.password"]
"""
    )
    rules = load_file(path)
    assert [r.name for r in rules] == ["big", "rule 2"]
    assert rules[0].action is Action.REQUIRE_APPROVAL and rules[0].source == "policy.toml:2"
    assert rules[1].fields == ("api_key", "body.password")


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ('[[rule]]\ntask = "x"\naction = "deny"\n', 3, "unknown action 'deny'"),
        (
            '[[rule]]\ntask = "x"\naction = "block"\n\n[[rule]]\nwhen = "a >"\naction = "block"\n',
            6,
            "expected a value",
        ),
        ('[[rule]]\ntask = "x"\naction = "redact"\n', 1, "needs `fields`"),
        ('[[rule]]\ntask = "x"\nacton = "block"\n', 3, "unknown key 'acton'"),
        ('[[rule]]\ntask = "x"\naction = \n', 3, "Invalid value"),
    ],
)
def test_bad_file_names_line_and_reason(tmp_path: Path, body: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(InvalidPolicy) as caught:
        load_file(path)
    assert f"line {line}" in str(caught.value) and reason in str(caught.value)


def test_redact_by_keyword_position_and_path() -> None:
    args, kwargs, found = redact(
        ["alice", "sk-123"],
        {"options": {"token": "t-9", "keep": 1}},
        ["api_key", "options.token", "missing"],
        ["user", "api_key", "options"],
    )
    assert args == ["alice", "[REDACTED]"]
    assert kwargs == {"options": {"token": "[REDACTED]", "keep": 1}}
    assert found == ("api_key", "options.token")
