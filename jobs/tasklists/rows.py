"""A stored task list as the code reads it: the executor row, its items, their states.

Plain dataclasses built from any row with the tables' column names (SQLAlchemy's or
psycopg's), so the CLI's fast read path (``cli.reads``) builds the same values as
``store`` without importing SQLAlchemy. Whatever cannot be read back as it was written
raises ``StoredQueueUnreadable``; loading the file then rebuilds the queue from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs import errors
from models.states import FINAL_TASK_STATES, ListStatus, TaskState

if TYPE_CHECKING:
    from jobs.tasklists.parser import ParsedList

PRIORITY_LABELS = ("P1", "P2", "P3", "P4")
# P1 (most urgent) -> the ledger's 5 (most urgent), P4 -> 2, so Redis orders them too.
LEDGER_PRIORITY = {1: 5, 2: 4, 3: 3, 4: 2}
IN_FLIGHT_STATES = frozenset(
    {TaskState.QUEUED, TaskState.RUNNING, TaskState.RETRY_WAIT, TaskState.PENDING_APPROVAL}
)
DEAD_STATES = frozenset({TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})


class ListNotLoaded(errors.NotFound):
    """No task list is loaded from that file."""


class UnknownItem(errors.NotFound):
    """The list has no item with that id."""


class DependencyCycle(errors.InvalidTaskInput):
    """The list's dependencies form a cycle; nothing was loaded."""


class StoredQueueUnreadable(errors.TaskledgerError):
    """The stored queue of the list cannot be read back."""


class InvalidListPath(errors.InvalidTaskInput):
    """That is not a usable path to a task list file."""


def canonical_path(path: str | Path) -> str:
    """Any spelling of a path to the same file gives the same key (symlinks, '..', '~')."""
    try:
        return str(Path(path).expanduser().resolve())
    except (RuntimeError, OSError, ValueError) as exc:
        # '~nobody/x' (no such user), a symlink loop, an embedded NUL: the caller's input.
        raise InvalidListPath(f"not a usable task list path: {path!r} ({exc})") from exc


def read(path: str | Path) -> ParsedList:
    """Parse the file at its canonical path; a missing or unreadable file is a clear error."""
    from jobs.tasklists.parser import parse_file  # Markdown parsing: only when reading a file

    canonical = canonical_path(path)
    try:
        return parse_file(canonical)
    except FileNotFoundError:
        raise errors.InvalidOption(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidOption(f"cannot read {path}: {exc}") from None


def not_loaded(path: str) -> ListNotLoaded:
    return ListNotLoaded(
        f"no task list is loaded from {path}; load it with "
        f"`taskledger lists load {path} --handler NAME`"
    )


@dataclass(frozen=True, kw_only=True)
class ListConfig:
    handler: str
    session_id: str | None = None
    concurrency: int = 1
    max_retries: int | None = None
    timeout_s: float | None = None
    stop_grace_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, raw: Any) -> ListConfig:
        try:
            if not isinstance(raw, dict) or not isinstance(raw.get("handler"), str):
                raise TypeError("config must be an object with a handler")
            config = cls(**raw)
            if not isinstance(config.concurrency, int) or config.concurrency < 1:
                raise TypeError("concurrency must be a positive integer")
            return config
        except TypeError as exc:
            raise StoredQueueUnreadable(f"stored executor config is unreadable: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class ListRow:
    id: uuid.UUID
    path: str
    title: str
    goal_id: uuid.UUID
    status: ListStatus
    config: ListConfig
    total_items: int
    completed_items: int
    failed_items: int
    skipped_items: int
    current_item_id: str | None
    started_at: datetime | None
    paused_at: datetime | None
    stopped_at: datetime | None
    stop_deadline: datetime | None
    loaded_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ListRow:
        return cls(
            id=row.id,
            path=row.path,
            title=row.title,
            goal_id=row.goal_id,
            status=ListStatus(row.status),
            config=ListConfig.from_json(row.config),
            total_items=row.total_items,
            completed_items=row.completed_items,
            failed_items=row.failed_items,
            skipped_items=row.skipped_items,
            current_item_id=row.current_item_id,
            started_at=row.started_at,
            paused_at=row.paused_at,
            stopped_at=row.stopped_at,
            stop_deadline=row.stop_deadline,
            loaded_at=row.loaded_at,
        )


@dataclass(frozen=True, kw_only=True)
class StoredItem:
    """An item and the state of its current ledger task."""

    row_id: uuid.UUID
    item_id: str
    task_id: uuid.UUID
    section: str
    position: int
    priority: int  # 1..4
    title: str
    details: str
    dependencies: tuple[str, ...]
    line: int
    checked: bool
    in_file: bool
    skip_reason: str | None
    state: TaskState
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    session_id: str | None

    @property
    def label(self) -> str:
        return f"P{self.priority}"

    @property
    def done(self) -> bool:
        """Counts as done for its dependents: completed, or checked in the file."""
        return self.state is TaskState.COMPLETED or self.checked

    @property
    def dead(self) -> bool:
        """Will not complete (until requeued): its dependents cannot run."""
        return self.state in DEAD_STATES and not self.checked

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_TASK_STATES

    @property
    def unstarted(self) -> bool:
        return self.state in (TaskState.BLOCKED, TaskState.QUEUED) and self.attempts == 0

    @property
    def description(self) -> str:
        return f"{self.title}\n{self.details}" if self.details else self.title


def item_from_row(row: Any) -> StoredItem:
    deps = row.dependencies
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise StoredQueueUnreadable(f"item {row.item_id}: stored dependencies are unreadable")
    if row.priority not in PRIORITY_LABELS:
        raise StoredQueueUnreadable(f"item {row.item_id}: stored priority {row.priority!r}")
    if row.task_id is None or row.state is None:
        raise StoredQueueUnreadable(f"item {row.item_id}: its ledger task is gone")
    return StoredItem(
        row_id=row.id,
        item_id=row.item_id,
        task_id=row.task_id,
        section=row.section,
        position=row.position,
        priority=int(row.priority[1]),
        title=row.title,
        details=row.details,
        dependencies=tuple(deps),
        line=row.line,
        checked=row.checked,
        in_file=row.in_file,
        skip_reason=row.skip_reason,
        state=TaskState(row.state),
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_error=row.last_error,
        session_id=row.session_id,
    )
