"""Policy at enqueue (seed 002 11.2.4): ordered rules decide allow, block, approval, redact.

Rules come from the TOML file named by ``TASKLEDGER_POLICY_FILE`` and from Python
(``register_rule``); file rules first, then registered ones, in order. First match
wins; no match allows. The file is read once per process; an error in it is
refused with its line and the reason (``InvalidPolicy``), never ignored::

    [[rule]]
    name = "big-payments"          # optional; default "rule N"
    task = "payments.*"            # glob on the task name (default "*")
    session = "agent-*"            # optional glob
    user = "alice"                 # optional glob
    when = "amount > 100"          # optional; see jobs/policy_rules.py
    action = "require_approval"    # allow | block | require_approval | redact
    reason = "payments over 100 need a person"

    [[rule]]
    task = "mail.send"
    action = "redact"
    fields = ["api_key", "body.password"]
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.errors import InvalidPolicy
from jobs.policy_rules import (
    Action,
    ConditionError,
    Decision,
    Rule,
    parse_condition,
)
from models.settings import get_settings

REDACTED = "[REDACTED]"
RULE_KEYS = frozenset({"name", "task", "session", "user", "when", "action", "fields", "reason"})

_lock = threading.Lock()
_file_rules: dict[str, tuple[Rule, ...]] = {}  # by file path, parsed once per process
_registered: list[Rule] = []


# -- loading ----------------------------------------------------------------------------------


def load_file(path: str | Path) -> tuple[Rule, ...]:
    """Parse a policy file; ``InvalidPolicy`` names the line and the reason of the first error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidPolicy(f"policy file {path}: cannot be read ({exc.strerror})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPolicy(f"policy file {path}: {exc}") from None
    unknown = set(document) - {"rule"}
    if unknown:
        raise InvalidPolicy(
            f"policy file {path}: unknown table(s) {sorted(unknown)}; rules are [[rule]] tables"
        )
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise InvalidPolicy(f"policy file {path}: `rule` must be [[rule]] tables")
    starts = _rule_lines(text)
    rules = []
    for index, table in enumerate(tables):
        start = starts[index] if index < len(starts) else 0
        end = starts[index + 1] if index + 1 < len(starts) else None
        rules.append(_rule_from_table(table, index, path, text, start, end))
    return tuple(rules)


def _rule_lines(text: str) -> list[int]:
    return [
        n
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("[[rule]]")
    ]


def _key_line(text: str, key: str, start: int, end: int | None) -> int:
    lines = text.splitlines()
    for n in range(start, (end or len(lines) + 1)):
        if lines[n - 1].strip().startswith(key) and "=" in lines[n - 1]:
            return n
    return start


def _rule_from_table(
    table: Mapping[str, Any], index: int, path: Path, text: str, start: int, end: int | None
) -> Rule:
    def fail(key: str | None, reason: str) -> InvalidPolicy:
        line = start if key is None else _key_line(text, key, start, end)
        return InvalidPolicy(f"policy file {path}, line {line}: {reason}")

    unknown = set(table) - RULE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, f"unknown key {key!r} (allowed: {', '.join(sorted(RULE_KEYS))})")
    for key in ("name", "task", "session", "user", "when", "action", "reason"):
        if key in table and not isinstance(table[key], str):
            raise fail(key, f"{key} must be a string")
    if "action" not in table:
        raise fail(None, "rule has no action (allow, block, require_approval or redact)")
    try:
        action = Action(table["action"])
    except ValueError:
        raise fail(
            "action",
            f"unknown action {table['action']!r} (allow, block, require_approval or redact)",
        ) from None
    fields = table.get("fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise fail("fields", "fields must be a list of argument names")
    if action is Action.REDACT and not fields:
        raise fail(None, "a redact rule needs `fields`, the arguments to replace")
    if action is not Action.REDACT and fields:
        raise fail("fields", '`fields` only goes with action = "redact"')
    when = None
    if "when" in table:
        try:
            when = parse_condition(table["when"])
        except ConditionError as exc:
            raise fail("when", f"when = {table['when']!r}: {exc}") from None
    return Rule(
        name=table.get("name") or f"rule {index + 1}",
        action=action,
        task=table.get("task", "*"),
        session=table.get("session"),
        user=table.get("user"),
        when=when,
        fields=tuple(fields),
        reason=table.get("reason", ""),
        source=f"{path.name}:{start}",
    )


def file_rules() -> tuple[Rule, ...]:
    """The configured file's rules (read once per process; raises InvalidPolicy)."""
    path = get_settings().policy_file
    if not path:
        return ()
    rules = _file_rules.get(path)
    if rules is None:
        with _lock:
            rules = _file_rules.get(path)
            if rules is None:
                rules = _file_rules[path] = load_file(path)
    return rules


def check_at_start() -> int:
    """Load the policy now, so a bad file stops a process at start; returns the rule count."""
    return len(rules())


def register_rule(
    *,
    action: Action | str,
    task: str = "*",
    name: str | None = None,
    session: str | None = None,
    user: str | None = None,
    when: str | None = None,
    fields: Iterable[str] = (),
    reason: str = "",
) -> Rule:
    """Add a rule from Python (after the file's rules). Raises InvalidPolicy on bad input."""
    table: dict[str, Any] = {"action": str(action), "task": task, "reason": reason}
    table.update({k: v for k, v in {"session": session, "user": user, "when": when}.items() if v})
    if fields:
        table["fields"] = list(fields)
    with _lock:
        rule = _rule_from_table(table, len(_registered), Path("<python>"), "", 0, None)
        if name:
            rule = Rule(**{**rule.__dict__, "name": name, "source": "python"})
        else:
            rule = Rule(**{**rule.__dict__, "name": f"python rule {len(_registered) + 1}"})
        _registered.append(rule)
    return rule


def clear_registered_rules() -> None:
    with _lock:
        _registered.clear()


def reset() -> None:
    """Forget parsed files and registered rules (tests; a changed file is read again)."""
    with _lock:
        _file_rules.clear()
        _registered.clear()


def rules() -> tuple[Rule, ...]:
    return file_rules() + tuple(_registered)


# -- deciding ---------------------------------------------------------------------------------


def decide(
    *,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    session_id: str | None,
    user_id: str | None,
    params: Sequence[str] = (),
    rule_set: Sequence[Rule] | None = None,
) -> Decision:
    """The first matching rule's decision; allow when none matches.

    ``params`` names the task's positional parameters, so ``amount`` matches whether
    it was passed by keyword or by position.
    """
    arguments = {**dict(zip(params, args, strict=False)), **kwargs}
    for rule in rules() if rule_set is None else rule_set:
        if rule.matches(
            name=name, session_id=session_id, user_id=user_id, arguments=arguments, args=args
        ):
            return Decision(action=rule.action, rule=rule)
    return Decision(action=Action.ALLOW)


def redact(
    args: Sequence[Any], kwargs: Mapping[str, Any], fields: Iterable[str], params: Sequence[str]
) -> tuple[list[Any], dict[str, Any], tuple[str, ...]]:
    """Copies of args and kwargs with each named field replaced; the fields actually found.

    A field is a parameter name (by keyword or position), ``args[N]``, or a dotted path
    into a dict argument (``body.password``).
    """
    new_args = _deep_copy(list(args))
    new_kwargs = _deep_copy(dict(kwargs))
    found = []
    for spec in fields:
        head, *rest = spec.split(".")
        container: Any
        key: Any
        if head.startswith("args[") and head.endswith("]") and head[5:-1].isdigit():
            container, key = new_args, int(head[5:-1])
        elif head in new_kwargs:
            container, key = new_kwargs, head
        elif head in params and params.index(head) < len(new_args):
            container, key = new_args, params.index(head)
        else:
            continue
        if isinstance(container, list) and key >= len(container):
            continue
        for part in rest:
            container, key = container[key], part
            if not isinstance(container, dict) or key not in container:
                break
        else:
            container[key] = REDACTED
            found.append(spec)
    return new_args, new_kwargs, tuple(found)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
