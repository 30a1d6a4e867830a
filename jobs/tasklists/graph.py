"""The dependency graph of a task list (pure): cycles, what may run next, Mermaid, ETA."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class Node(Protocol):
    @property
    def item_id(self) -> str: ...
    @property
    def dependencies(self) -> Sequence[str]: ...


def find_cycle(nodes: Iterable[Node]) -> list[str] | None:
    """One dependency cycle as ``[a, b, c, a]`` (a depends on b ...), or None."""
    deps = {n.item_id: [d for d in n.dependencies] for n in nodes}
    colour: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for dep in deps.get(node, ()):
            if dep not in deps:
                continue
            if colour.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in colour and (cycle := visit(dep)):
                return cycle
        path.pop()
        colour[node] = 2
        return None

    for node in deps:
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


def describe_cycle(cycle: Sequence[str]) -> str:
    return " -> ".join(cycle)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    item_id: str
    priority: int  # 1 (P1) first
    position: int
    dependencies: tuple[str, ...]


def runnable(waiting: Iterable[Candidate], done: set[str], *, room: int) -> list[Candidate]:
    """The next ``room`` items to release: dependencies all done, by priority then position."""
    if room <= 0:
        return []
    ready = [c for c in waiting if all(d in done for d in c.dependencies)]
    return sorted(ready, key=lambda c: (c.priority, c.position))[:room]


def blocked_by_dead(waiting: Iterable[Candidate], dead: Mapping[str, str]) -> dict[str, str]:
    """Items that can never run, with the dependency that failed or was skipped, transitively.

    ``dead`` maps an item that will not complete to itself; the answer maps each waiting
    item that depends (directly or through others) on one of them to the direct
    dependency that is dead.
    """
    waiting = list(waiting)
    gone = dict(dead)
    out: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for c in waiting:
            if c.item_id in out:
                continue
            culprit = next((d for d in c.dependencies if d in gone), None)
            if culprit is not None:
                out[c.item_id] = culprit
                gone[c.item_id] = c.item_id
                changed = True
    return out


# -- Mermaid --------------------------------------------------------------------------------

STATE_CLASSES = {
    "completed": "fill:#c8f7c5,stroke:#2e7d32",
    "running": "fill:#bbdefb,stroke:#1565c0",
    "queued": "fill:#fff9c4,stroke:#f9a825",
    "retry_wait": "fill:#ffe0b2,stroke:#ef6c00",
    "failed": "fill:#ffcdd2,stroke:#c62828",
    "skipped": "fill:#eeeeee,stroke:#9e9e9e,color:#757575",
    "cancelled": "fill:#eeeeee,stroke:#6a1b9a",
}


@dataclass(frozen=True, kw_only=True)
class GraphNode:
    item_id: str
    title: str
    section: str
    priority: int
    dependencies: tuple[str, ...]
    state: str | None = None


def mermaid(nodes: Sequence[GraphNode]) -> str:
    """``flowchart TD``: one subgraph per section, an arrow from each dependency to its item."""
    lines = ["flowchart TD"]
    by_section: dict[str, list[GraphNode]] = {}
    for node in nodes:
        by_section.setdefault(node.section, []).append(node)
    for number, (section, members) in enumerate(by_section.items()):
        indent = "    "
        if section:
            lines.append(f'    subgraph s{number}["{_quote(section)}"]')
            indent = "        "
        for node in members:
            label = _quote(f"{node.item_id} [P{node.priority}] {_short(node.title)}")
            cls = f":::{node.state}" if node.state in STATE_CLASSES else ""
            lines.append(f'{indent}{_mid(node.item_id)}["{label}"]{cls}')
        if section:
            lines.append("    end")
    known = {n.item_id for n in nodes}
    for node in nodes:
        for dep in node.dependencies:
            if dep in known:
                lines.append(f"    {_mid(dep)} --> {_mid(node.item_id)}")
    used = {n.state for n in nodes if n.state in STATE_CLASSES}
    for state in sorted(used, key=str):
        lines.append(f"    classDef {state} {STATE_CLASSES[str(state)]}")
    return "\n".join(lines) + "\n"


def _mid(item_id: str) -> str:
    return "i_" + re.sub(r"[^A-Za-z0-9_]", "_", item_id)


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- predicted finish -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Forecast:
    finish_at: datetime | None
    remaining: int
    mean_s: float | None
    samples: int

    def describe(self, now: datetime) -> str:
        if self.remaining == 0:
            return "nothing left to run"
        if self.finish_at is None or self.mean_s is None:
            return f"unknown until an item finishes ({self.remaining} left)"
        left = max((self.finish_at - now).total_seconds(), 0.0)
        return (
            f"{self.finish_at:%Y-%m-%d %H:%M:%S} UTC (in {_duration(left)}; {self.remaining} "
            f"left, {self.mean_s:.1f} s per item over {self.samples} finished)"
        )


def forecast(
    durations_s: Sequence[float],
    *,
    remaining: int,
    running_elapsed_s: Sequence[float],
    concurrency: int,
    now: datetime,
) -> Forecast:
    """Remaining items x the mean observed duration, spread over the list's concurrency;
    the running items are counted as already part-way through."""
    if not durations_s:
        return Forecast(finish_at=None, remaining=remaining, mean_s=None, samples=0)
    mean = sum(durations_s) / len(durations_s)
    work = remaining * mean - sum(min(e, mean * 0.95) for e in running_elapsed_s)
    seconds = max(work, 0.0) / max(concurrency, 1)
    return Forecast(
        finish_at=now + timedelta(seconds=seconds),
        remaining=remaining,
        mean_s=mean,
        samples=len(durations_s),
    )


def _duration(total_s: float) -> str:
    seconds = round(total_s)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
