"""Markdown task lists -> items (pure: text in, items and problems out).

markdown-it-py finds the structure (headings, lists, list items, paragraphs,
with their line numbers); small regexes only read the text of one item line.

    # Phase 1                                   <- a section (headings nest)
    - [ ] [P2] EXE-004: Description (depends: EXE-001, EXE-002)
      more description                          <- indented lines describe the item
    - [x] EXE-001 done already                  <- checked: recorded as completed
    * [ ] (P1) [EXE-005] variant (after EXE-004)

Accepted: ``-``, ``*``, ``+`` and ``1.`` items; ``[ ]``/``[x]``/``[X]``;
priority ``[P1]``, ``(P1)``, ``P1:``, ``**P1**`` before the text or ``(P1)``
after it (P1 most urgent, none = P3); id ``EXE-004:``, ``[EXE-004]``,
``**EXE-004**``, ``EXE-004 -``; dependencies ``(depends: A, B)``,
``(depends on A and B)``, ``(after A)``, ``(requires A)``, ``(blocked by A)``,
a trailing ``depends: A, B`` or a description line ``depends: A, B``.
A line that cannot be read is a ``Problem`` (file, line, reason) and the rest loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

DEFAULT_PRIORITY = 3
ID_PATTERN = r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-[0-9]+[a-z]?"
AUTO_PATTERN = r"auto-[0-9a-f]{8}(?:-[0-9]+)?"
_ID = re.compile(rf"(?:{ID_PATTERN}|{AUTO_PATTERN})")
_CHECKBOX = re.compile(r"^\[( |x|X)\](?:\s+|$)")
# Brackets at the start that were probably meant as a checkbox: [], [-], [ x], [xx], [P1] ...
_BROKEN_CHECKBOX = re.compile(r"^\[(?:[^\]\w]{0,2}|[xX ]{2,3}|[xX]\W|\W[xX]|P\d)\]")
_BROKEN_LINE = re.compile(r"^(?:[-*+]\[[ xX]?\]|\[[ xX]\]\s)")
_SEP = r"(?:\s*[:|\u2013\u2014]\s*|\s+-\s+|\s+|$)"  # en and em dashes
_LEAD_PRIORITY = re.compile(rf"^(?:\*\*|__|`)?[\[(]?P(?P<n>\d+)[\])]?(?:\*\*|__|`)?{_SEP}")
_LEAD_ID = re.compile(rf"^(?:\*\*|__|`)?\[?(?P<id>{ID_PATTERN})\]?(?:\*\*|__|`)?{_SEP}")
_DEPS_WORDS = r"depends(?:\s+on)?|deps|after|requires|blocked\s+by"
_PAREN_DEPS = re.compile(rf"\(\s*(?:{_DEPS_WORDS})\s*:?\s*(?P<list>[^)]*)\)", re.IGNORECASE)
_TRAIL_DEPS = re.compile(
    rf"\s+(?:[-\u2013\u2014]\s+)?(?:{_DEPS_WORDS})\s*:\s*(?P<list>.*)$", re.IGNORECASE
)
_LINE_DEPS = re.compile(rf"^(?:{_DEPS_WORDS})\s*:\s*(?P<list>.*)$", re.IGNORECASE)
_TRAIL_PRIORITY = re.compile(r"\s*[\[(](?:priority\s*:?\s*)?P(?P<n>\d+)[\])]\s*$", re.IGNORECASE)
_LINE_PRIORITY = re.compile(r"^priority\s*:\s*P(?P<n>\d+)\s*$", re.IGNORECASE)
_DEP_SPLIT = re.compile(r"\s*(?:,|;|&|\band\b|\s)\s*", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Item:
    """One checklist item. ``priority`` is 1 (P1, most urgent) to 4."""

    item_id: str
    title: str
    details: str  # the indented description lines under the item
    section: str  # nested headings, "Phase 1 / Executor"
    priority: int
    dependencies: tuple[str, ...]
    checked: bool
    line: int  # 1-based line of the item in the file
    position: int  # 0-based order in the file
    explicit_id: bool

    @property
    def label(self) -> str:
        return f"P{self.priority}"

    @property
    def description(self) -> str:
        """What the handler is given: the item's text and its description lines."""
        return f"{self.title}\n{self.details}" if self.details else self.title


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class ParsedList:
    path: str
    title: str
    items: tuple[Item, ...]
    problems: tuple[Problem, ...]
    sha256: str = ""

    def by_id(self) -> dict[str, Item]:
        return {item.item_id: item for item in self.items}


def parse_file(path: str | Path) -> ParsedList:
    path = Path(path)
    return parse(path.read_text(encoding="utf-8"), str(path))


def parse(text: str, path: str = "<string>") -> ParsedList:
    walker = _Walker(path)
    walker.walk(MarkdownIt("commonmark").parse(text))
    items, problems = _resolve(walker.drafts, walker.problems, path)
    title = walker.title or Path(path).stem
    return ParsedList(
        path=path,
        title=title,
        items=tuple(items),
        problems=tuple(problems),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


@dataclass
class _Draft:
    explicit_id: str | None
    title: str
    details: list[str]
    section: str
    priority: int
    dependencies: list[str]
    dep_problems: list[tuple[int, str]]
    checked: bool
    line: int


@dataclass
class _Walker:
    path: str
    title: str = ""
    headings: list[tuple[int, str]] = field(default_factory=list)
    drafts: list[_Draft] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def section(self) -> str:
        return " / ".join(text for _, text in self.headings)

    def problem(self, line: int, reason: str) -> None:
        self.problems.append(Problem(self.path, line, reason))

    def walk(self, tokens: Sequence[Token]) -> None:
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok.type == "heading_open":
                level = int(tok.tag[1:])
                text = tokens[i + 1].content.strip()
                if level == 1 and not self.title and not self.headings and not self.drafts:
                    self.title = text  # the document's title, not a section
                else:
                    self.headings = [h for h in self.headings if h[0] < level] + [(level, text)]
                i += 3
            elif tok.type == "list_item_open":
                i = self._item(tokens, i, None)
            elif tok.type == "inline" and tok.map:
                self._stray_lines(tok, tok.content.split("\n"), 0)
                i += 1
            else:
                i += 1

    def _stray_lines(self, tok: Token, lines: list[str], first: int) -> list[str]:
        """Report lines that look like a broken checklist item; return the others."""
        kept = []
        assert tok.map is not None
        for offset, line in enumerate(lines[first:], start=first):
            if _BROKEN_LINE.match(line.strip()):
                reason = (
                    "checkbox without a list marker: write '- [ ] ...'"
                    if line.strip().startswith("[")
                    else "not a list item: put a space between the marker and '['"
                )
                self.problem(tok.map[0] + offset + 1, reason)
            else:
                kept.append(line)
        return kept

    def _item(self, tokens: Sequence[Token], start: int, parent: _Draft | None) -> int:
        """Read the list item opening at ``start``; return the index after its close."""
        level = tokens[start].level
        end = _close_of(tokens, start)
        draft: _Draft | None = None
        first_paragraph = True
        i = start + 1
        while i < end:
            tok = tokens[i]
            if tok.type == "list_item_open":
                i = self._item(tokens, i, draft or parent)
                continue
            if tok.type == "inline" and tok.map and tok.level == level + 2:
                lines = tok.content.split("\n")
                if first_paragraph:
                    first_paragraph = False
                    draft = self._start(tok, lines[0])
                    rest = self._stray_lines(tok, lines, 1)
                    if draft is not None:
                        self._describe(draft, rest, tok.map[0] + 2)
                    elif parent is not None:  # a plain bullet under an item describes it
                        self._describe(parent, [f"- {lines[0]}", *rest], tok.map[0] + 1)
                    # a plain bullet outside any item is a note, not a task
                else:
                    target = draft or parent
                    if target is not None:
                        kept = self._stray_lines(tok, lines, 0)
                        self._describe(target, ["", *kept], tok.map[0])
            elif tok.type in ("fence", "code_block") and (draft or parent):
                target = draft or parent
                assert target is not None
                target.details.extend(["", *tok.content.rstrip("\n").split("\n")])
            i += 1
        return end + 1

    def _start(self, tok: Token, first_line: str) -> _Draft | None:
        assert tok.map is not None
        line_no = tok.map[0] + 1
        text = first_line.strip()
        box = _CHECKBOX.match(text)
        if box is None:
            if _BROKEN_CHECKBOX.match(text):
                bracket = text[: text.index("]") + 1]
                self.problem(line_no, f"malformed checkbox {bracket!r}: use '[ ]' or '[x]'")
            return None
        return self._read_item(text[box.end() :], checked=box.group(1) != " ", line=line_no)

    def _read_item(self, text: str, *, checked: bool, line: int) -> _Draft | None:
        priority: int | None = None
        item_id: str | None = None
        rest = text.strip()
        for _ in range(4):  # priority and id, in either order, each at most once
            if priority is None and (m := _LEAD_PRIORITY.match(rest)):
                priority = int(m.group("n"))
            elif item_id is None and (m := _LEAD_ID.match(rest)):
                item_id = m.group("id")
            else:
                break
            rest = rest[m.end() :].strip()
        deps: list[str] = []
        dep_problems: list[tuple[int, str]] = []
        for m in list(_PAREN_DEPS.finditer(rest)):
            deps += _dep_list(m.group("list"), line, dep_problems)
        rest = _PAREN_DEPS.sub("", rest).strip()
        if m := _TRAIL_DEPS.search(rest):
            deps += _dep_list(m.group("list"), line, dep_problems)
            rest = rest[: m.start()].strip()
        if priority is None and (m := _TRAIL_PRIORITY.search(rest)):
            priority = int(m.group("n"))
            rest = rest[: m.start()].strip()
        if priority is not None and not 1 <= priority <= 4:
            self.problem(line, f"priority P{priority} is out of range: use P1 (most urgent) to P4")
            return None
        title = rest.strip(" -\u2013\u2014:|").strip()
        if not title:
            self.problem(line, "the item has no text")
            return None
        draft = _Draft(
            explicit_id=item_id,
            title=title,
            details=[],
            section=self.section,
            priority=priority or DEFAULT_PRIORITY,
            dependencies=deps,
            dep_problems=dep_problems,
            checked=checked,
            line=line,
        )
        self.drafts.append(draft)
        return draft

    def _describe(self, draft: _Draft, lines: list[str], first_line_no: int) -> None:
        for offset, raw in enumerate(lines):
            line = raw.strip()
            if m := _LINE_DEPS.match(line):
                draft.dependencies += _dep_list(
                    m.group("list"), first_line_no + offset, draft.dep_problems
                )
            elif m := _LINE_PRIORITY.match(line):
                draft.priority = int(m.group("n")) if 1 <= int(m.group("n")) <= 4 else 3
            else:
                draft.details.append(line)


def _close_of(tokens: Sequence[Token], start: int) -> int:
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i].type == "list_item_open":
            depth += 1
        elif tokens[i].type == "list_item_close":
            depth -= 1
            if depth == 0:
                return i
    return len(tokens) - 1


def _dep_list(text: str, line: int, problems: list[tuple[int, str]]) -> list[str]:
    out: list[str] = []
    bad: list[str] = []
    for raw in _DEP_SPLIT.split(text.strip()):
        token = raw.strip("`*[]().")
        if token:
            (out if _ID.fullmatch(token) else bad).append(token)
    if bad:
        words = ", ".join(repr(b) for b in bad)
        problems.append((line, f"dependency {words} is not an item id; ignored"))
    elif not out:
        problems.append((line, "empty dependency list; ignored"))
    return out


def auto_id(section: str, title: str) -> str:
    """A stable id for an item without one: the same section and text give the same id."""
    normal = " ".join(f"{section}\n{title}".lower().split())
    return "auto-" + hashlib.sha1(normal.encode()).hexdigest()[:8]


def _resolve(
    drafts: list[_Draft], problems: list[Problem], path: str
) -> tuple[list[Item], list[Problem]]:
    """Give every item its id (reporting duplicates) and check its dependencies exist."""
    seen: dict[str, int] = {}
    named: list[tuple[str, _Draft]] = []
    for draft in drafts:
        if draft.explicit_id is not None:
            item_id = draft.explicit_id
            if item_id in seen:
                problems.append(
                    Problem(
                        path, draft.line, f"duplicate id {item_id} (first on line {seen[item_id]})"
                    )
                )
                continue
        else:
            base = auto_id(draft.section, draft.title)
            item_id, n = base, 1
            while item_id in seen:
                n += 1
                item_id = f"{base}-{n}"
        seen[item_id] = draft.line
        named.append((item_id, draft))
    items = []
    for position, (item_id, draft) in enumerate(named):
        deps: list[str] = []
        for line, reason in draft.dep_problems:
            problems.append(Problem(path, line, reason))
        for dep in draft.dependencies:
            if dep in deps:
                continue
            if dep not in seen:
                problems.append(
                    Problem(
                        path,
                        draft.line,
                        f"{item_id} depends on {dep}, which is not in the list; ignored",
                    )
                )
                continue
            deps.append(dep)
        details = "\n".join(draft.details).strip("\n")
        items.append(
            Item(
                item_id=item_id,
                title=draft.title,
                details=details,
                section=draft.section,
                priority=draft.priority,
                dependencies=tuple(deps),
                checked=draft.checked,
                line=draft.line,
                position=position,
                explicit_id=draft.explicit_id is not None,
            )
        )
    problems.sort(key=lambda p: p.line)
    return items, problems
