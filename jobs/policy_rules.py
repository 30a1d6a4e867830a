"""Policy rules and their ``when`` conditions: parsing and matching, no database.

A condition is a small comparison language, parsed by hand (never ``eval``)::

    amount > 100
    to == "boss@example.com" and urgent == true
    region in ["eu", "us"] or args[0] >= 3
    recipient.domain != "example.com"

Operands on the left name an argument (a keyword or a parameter name, ``args[N]``
for a position, dots into dicts); on the right a literal: number, quoted string,
true/false/null or a list of those. ``and`` binds tighter than ``or``. A missing
argument makes its comparison false.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MISSING = object()


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    REQUIRE_APPROVAL = "require_approval"
    REDACT = "redact"


class ConditionError(ValueError):
    """A ``when`` expression that cannot be parsed; the message says where."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|>=|<=|>|<)
      | (?P<punct>[\[\],])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "in", "not", "true", "false", "null"}
_OPS = {"==", "!=", ">", ">=", "<", "<=", "in", "not in"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ConditionError(f"unexpected {text[pos:].strip()[:20]!r} at column {pos + 1}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


@dataclass(frozen=True)
class Comparison:
    path: tuple[str | int, ...]  # ("amount",), ("args", 0), ("recipient", "domain")
    op: str
    value: Any

    def holds(self, arguments: Mapping[str, Any], args: Sequence[Any]) -> bool:
        actual = _lookup(self.path, arguments, args)
        if actual is MISSING:
            return False
        try:
            if self.op == "==":
                return bool(actual == self.value)
            if self.op == "!=":
                return bool(actual != self.value)
            if self.op == "in":
                return bool(actual in self.value)
            if self.op == "not in":
                return bool(actual not in self.value)
            if isinstance(actual, bool) or not isinstance(actual, type(self.value) | int | float):
                return False
            if self.op == ">":
                return bool(actual > self.value)
            if self.op == ">=":
                return bool(actual >= self.value)
            if self.op == "<":
                return bool(actual < self.value)
            return bool(actual <= self.value)
        except TypeError:  # "abc" > 3: not comparable, so not a match
            return False


@dataclass(frozen=True)
class Condition:
    """``or`` of ``and`` groups of comparisons."""

    text: str
    groups: tuple[tuple[Comparison, ...], ...]

    def holds(self, arguments: Mapping[str, Any], args: Sequence[Any]) -> bool:
        return any(all(c.holds(arguments, args) for c in group) for group in self.groups)


def parse_condition(text: str) -> Condition:
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("`when` must be a non-empty string such as 'amount > 100'")
    tokens = _tokens(text)
    groups: list[tuple[Comparison, ...]] = []
    current: list[Comparison] = []
    i = 0
    while True:
        comparison, i = _comparison(tokens, i)
        current.append(comparison)
        if i == len(tokens):
            break
        joiner = tokens[i]
        if joiner == ("word", "and"):
            i += 1
        elif joiner == ("word", "or"):
            groups.append(tuple(current))
            current = []
            i += 1
        else:
            raise ConditionError(f"expected 'and' or 'or', got {joiner[1]!r}")
        if i == len(tokens):
            raise ConditionError(f"expression ends after {joiner[1]!r}")
    groups.append(tuple(current))
    return Condition(text=text, groups=tuple(groups))


def _comparison(tokens: list[tuple[str, str]], i: int) -> tuple[Comparison, int]:
    path, i = _path(tokens, i)
    if i >= len(tokens):
        raise ConditionError("a comparison needs an operator and a value, e.g. 'amount > 100'")
    kind, text = tokens[i]
    if kind == "op":
        op = text
        i += 1
    elif (kind, text) == ("word", "in"):
        op = "in"
        i += 1
    elif (kind, text) == ("word", "not") and i + 1 < len(tokens) and tokens[i + 1][1] == "in":
        op = "not in"
        i += 2
    else:
        raise ConditionError(f"expected an operator ({', '.join(sorted(_OPS))}), got {text!r}")
    value, i = _literal(tokens, i)
    if op in {"in", "not in"} and not isinstance(value, list):
        raise ConditionError(f'\'{op}\' needs a list, e.g. ["a", "b"]')
    if op in {">", ">=", "<", "<="} and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        raise ConditionError(f"'{op}' compares with a number or a string, not {value!r}")
    return Comparison(path=path, op=op, value=value), i


def _path(tokens: list[tuple[str, str]], i: int) -> tuple[tuple[str | int, ...], int]:
    if i >= len(tokens) or tokens[i][0] != "word" or tokens[i][1] in _KEYWORDS:
        got = tokens[i][1] if i < len(tokens) else "the end"
        raise ConditionError(f"expected an argument name, got {got!r}")
    parts: list[str | int] = list(tokens[i][1].split("."))
    i += 1
    while i + 2 < len(tokens) and tokens[i] == ("punct", "["):
        kind, text = tokens[i + 1]
        if kind != "number" or not text.isdigit() or tokens[i + 2] != ("punct", "]"):
            raise ConditionError("an index must look like args[0]")
        parts.append(int(text))
        i += 3
    return tuple(parts), i


def _literal(tokens: list[tuple[str, str]], i: int) -> tuple[Any, int]:
    if i >= len(tokens):
        raise ConditionError("expected a value after the operator")
    kind, text = tokens[i]
    if kind == "number":
        return (float(text) if any(c in text for c in ".eE") else int(text)), i + 1
    if kind == "string":
        return _unquote(text), i + 1
    if kind == "word" and text in {"true", "false", "null"}:
        return {"true": True, "false": False, "null": None}[text], i + 1
    if (kind, text) == ("punct", "["):
        items: list[Any] = []
        i += 1
        while i < len(tokens) and tokens[i] != ("punct", "]"):
            item, i = _literal(tokens, i)
            if isinstance(item, list):
                raise ConditionError("lists cannot be nested")
            items.append(item)
            if i < len(tokens) and tokens[i] == ("punct", ","):
                i += 1
        if i >= len(tokens):
            raise ConditionError("a list is missing its closing ']'")
        return items, i + 1
    raise ConditionError(
        f'expected a value (number, "string", true, false, null, [..]), got {text!r}'
    )


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _lookup(path: tuple[str | int, ...], arguments: Mapping[str, Any], args: Sequence[Any]) -> Any:
    head, rest = path[0], path[1:]
    if head == "args" and rest and isinstance(rest[0], int):
        value: Any = args[rest[0]] if rest[0] < len(args) else MISSING
        rest = rest[1:]
    else:
        value = arguments.get(str(head), MISSING)
    for part in rest:
        if value is MISSING:
            return MISSING
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else MISSING
        else:
            value = value.get(part, MISSING) if isinstance(value, dict) else MISSING
    return value


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One ``[[rule]]``: globs on task name, session and user, an optional condition."""

    name: str
    action: Action
    task: str = "*"
    session: str | None = None
    user: str | None = None
    when: Condition | None = None
    fields: tuple[str, ...] = ()
    reason: str = ""
    source: str = "python"  # "file.toml:12" for a rule from the policy file

    def matches(
        self,
        *,
        name: str,
        session_id: str | None,
        user_id: str | None,
        arguments: Mapping[str, Any],
        args: Sequence[Any],
    ) -> bool:
        if not fnmatch.fnmatchcase(name, self.task):
            return False
        if self.session is not None and not fnmatch.fnmatchcase(session_id or "", self.session):
            return False
        if self.user is not None and not fnmatch.fnmatchcase(user_id or "", self.user):
            return False
        return self.when is None or self.when.holds(arguments, args)


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: Rule | None = None
    redacted: tuple[str, ...] = field(default=())

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": str(self.action), "rule": self.rule_name}
        if self.rule is not None and self.rule.reason:
            out["reason"] = self.rule.reason
        if self.redacted:
            out["redacted"] = list(self.redacted)
        return out

    @property
    def rule_name(self) -> str | None:
        return None if self.rule is None else self.rule.name
