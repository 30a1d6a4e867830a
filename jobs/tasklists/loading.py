"""Loading a task list file into the ledger, and loading it again after an edit.

First load: a goal, one row per item (section, position, priority, dependencies,
description) and one ledger task per item, ``blocked`` until the executor
releases it (checked items are written ``completed`` and never run). Reload:
completed items are never added again, new items are added in their place,
unstarted items removed from the file are skipped (``removed_from_list``),
unstarted items whose text changed are updated. A stored queue that cannot be
read back is rebuilt from the file (a warning is logged); tasks that already
completed or are under way keep their place, so nothing finished is redone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from jobs import errors
from jobs.tasklists import executor, graph, store
from jobs.tasklists.parser import Item, ParsedList, Problem
from jobs.tasklists.store import ListConfig, ListRow, StoredItem
from jobs.transitions import create_goal, create_tasks, move_task, move_tasks, write_events
from models import GoalStatus, Task, TaskState
from models.task_list import ListStatus, TaskList, TaskListItem

log = logging.getLogger("taskledger.tasklists")

# Builds the task row for an item: validated by the handler's DurableTask (jobs/tasklists/api).
RowFor = Callable[[Item, ListConfig, uuid.UUID, datetime], dict[str, Any]]
LIVE_STATES = (
    TaskState.BLOCKED,
    TaskState.QUEUED,
    TaskState.RUNNING,
    TaskState.RETRY_WAIT,
    TaskState.PENDING_APPROVAL,
    TaskState.COMPLETED,
)


@dataclass
class LoadReport:
    path: str
    title: str
    list_id: uuid.UUID
    goal_id: uuid.UUID
    created: bool = False
    rebuilt: bool = False
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # newly checked in the file
    total: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def item_kwargs(item: Item | StoredItem, path: str) -> dict[str, Any]:
    """What the handler is called with."""
    return {
        "item_id": item.item_id,
        "description": item.description,
        "section": item.section,
        "priority": item.label,
        "list_path": path,
    }


def check_graph(parsed: ParsedList) -> None:
    cycle = graph.find_cycle(parsed.items)
    if cycle is not None:
        lines = {i.item_id: i.line for i in parsed.items}
        raise store.DependencyCycle(
            f"{parsed.path}:{lines[cycle[0]]}: dependency cycle "
            f"{graph.describe_cycle(cycle)}; nothing was loaded"
        )


def load(
    conn: Connection,
    parsed: ParsedList,
    *,
    config: ListConfig | None,
    row_for: RowFor,
    now: datetime,
) -> tuple[LoadReport, list[Row[Any]]]:
    """Write or reconcile the list; return the report and the items released to run."""
    check_graph(parsed)
    path = parsed.path
    try:
        lst = store.get_list(conn, path, lock=True)
        found = None if lst is None else store.items(conn, lst.id)
    except store.StoredQueueUnreadable as exc:
        log.warning("stored queue of %s is unreadable (%s); rebuilding it from the file", path, exc)
        report = _rebuild(conn, parsed, config=config, row_for=row_for, now=now, why=str(exc))
    else:
        if lst is None or found is None:
            report = _create(conn, parsed, config=config, row_for=row_for, now=now)
        else:
            report = _reconcile(conn, lst, found, parsed, config, row_for, now)
    report.problems = list(parsed.problems)
    lst = store.require_list(conn, path, lock=True)
    record_load(conn, lst, report, now)
    return report, executor.settle(conn, lst, now)


def _create(
    conn: Connection,
    parsed: ParsedList,
    *,
    config: ListConfig | None,
    row_for: RowFor,
    now: datetime,
    reuse: Mapping[str, tuple[uuid.UUID, TaskState]] | None = None,
    list_id: uuid.UUID | None = None,
    goal_id: uuid.UUID | None = None,
) -> LoadReport:
    if config is None:
        raise errors.InvalidOption(
            f"{parsed.path} is not loaded yet: give the handler (--handler NAME), the durable "
            "task each item runs as"
        )
    if goal_id is None:
        goal_id = uuid.uuid4()
        create_goal(
            conn,
            {
                "id": goal_id,
                "title": parsed.title,
                "description": f"task list {parsed.path}",
                "status": GoalStatus.OPEN,
                "priority": 0,
                "metadata": {"task_list": parsed.path},
                "created_at": now,
                "updated_at": now,
            },
            now,
        )
    if list_id is None:
        list_id = uuid.uuid4()
        conn.execute(
            insert(TaskList).values(
                id=list_id,
                path=parsed.path,
                title=parsed.title,
                goal_id=goal_id,
                status=ListStatus.STOPPED,
                config=config.to_json(),
                file_sha256=parsed.sha256,
                loaded_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    report = LoadReport(
        path=parsed.path, title=parsed.title, list_id=list_id, goal_id=goal_id, created=True
    )
    rows, links = [], []
    for item in parsed.items:
        kept = (reuse or {}).get(item.item_id)
        if kept is not None:
            links.append(_item_row(list_id, item, kept[0], now))
            continue
        row = row_for(item, config, goal_id, now)
        rows.append(row)
        links.append(_item_row(list_id, item, row["id"], now))
        report.added.append(item.item_id)
    create_tasks(conn, rows, now)
    if links:
        conn.execute(insert(TaskListItem), links)
    report.total = len(parsed.items)
    return report


def _item_row(list_id: uuid.UUID, item: Item, task_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "list_id": list_id,
        "item_id": item.item_id,
        "task_id": task_id,
        "section": item.section,
        "position": item.position,
        "priority": item.label,
        "title": item.title,
        "details": item.details,
        "dependencies": list(item.dependencies),
        "line": item.line,
        "checked": item.checked,
        "in_file": True,
        "created_at": now,
        "updated_at": now,
    }


def _rebuild(
    conn: Connection,
    parsed: ParsedList,
    *,
    config: ListConfig | None,
    row_for: RowFor,
    now: datetime,
    why: str,
) -> LoadReport:
    """Seed 001's edge case 2: start again from the file, keeping every task that completed
    or is under way (found by the list's goal and the item id in its arguments)."""
    raw = conn.execute(
        select(TaskList.id, TaskList.goal_id, TaskList.config)
        .where(TaskList.path == parsed.path)
        .with_for_update()
    ).one()
    if config is None:
        try:
            config = ListConfig.from_json(raw.config)
        except store.StoredQueueUnreadable:
            raise errors.InvalidOption(
                f"the stored queue of {parsed.path} is unreadable and so is its handler: load it "
                "again with --handler NAME"
            ) from None
    tasks = conn.execute(
        select(Task.id, Task.state, Task.kwargs, Task.created_at)
        .where(Task.goal_id == raw.goal_id)
        .order_by(Task.created_at)
    ).all()
    reuse: dict[str, tuple[uuid.UUID, TaskState]] = {}
    for t in tasks:
        item_id = (t.kwargs or {}).get("item_id")
        if isinstance(item_id, str) and t.state in LIVE_STATES:
            reuse[item_id] = (t.id, t.state)  # the newest task of an item wins
    keep = {task_id for task_id, _ in reuse.values()}
    stale = [t.id for t in tasks if t.id not in keep]
    move_tasks(
        conn,
        [Task.id.in_(stale)],
        TaskState.SKIPPED,
        sources=[TaskState.BLOCKED, TaskState.QUEUED, TaskState.RETRY_WAIT],
        events=[("task_skipped", {"reason": "queue_rebuilt", "list": parsed.path})],
        now=now,
    )
    conn.execute(delete(TaskListItem).where(TaskListItem.list_id == raw.id))
    conn.execute(
        update(TaskList)
        .where(TaskList.id == raw.id)
        .values(
            config=config.to_json(), title=parsed.title, file_sha256=parsed.sha256, updated_at=now
        )
    )
    report = _create(
        conn,
        parsed,
        config=config,
        row_for=row_for,
        now=now,
        reuse={k: v for k, v in reuse.items() if k in parsed.by_id()},
        list_id=raw.id,
        goal_id=raw.goal_id,
    )
    report.created, report.rebuilt = False, True
    report.notes.append(f"the stored queue was unreadable ({why}); rebuilt from the file")
    return report


def _reconcile(
    conn: Connection,
    lst: ListRow,
    found: list[StoredItem],
    parsed: ParsedList,
    config: ListConfig | None,
    row_for: RowFor,
    now: datetime,
) -> LoadReport:
    report = LoadReport(path=lst.path, title=parsed.title, list_id=lst.id, goal_id=lst.goal_id)
    if config is not None:
        merged = {**lst.config.to_json(), **config.to_json()}
        if merged != lst.config.to_json():
            executor.set_list(conn, lst.id, now, config=merged)
        config = ListConfig.from_json(merged)
    else:
        config = lst.config
    executor.set_list(
        conn, lst.id, now, title=parsed.title, loaded_at=now, file_sha256=parsed.sha256
    )
    stored = {s.item_id: s for s in found}
    new_rows, new_links = [], []
    goal_id: uuid.UUID | None = None
    for item in parsed.items:
        s = stored.get(item.item_id)
        if s is None:
            goal_id = goal_id or executor.open_goal(conn, lst, now)
            row = row_for(item, config, goal_id, now)
            new_rows.append(row)
            new_links.append(_item_row(lst.id, item, row["id"], now))
            report.added.append(item.item_id)
            continue
        place: dict[str, Any] = {"position": item.position, "line": item.line, "in_file": True}
        if s.skip_reason == "removed_from_list" and not item.checked:
            # back in the file after a reload removed it: it runs after all, as it reads now
            goal_id = goal_id or executor.open_goal(conn, lst, now)
            row = row_for(item, config, goal_id, now)
            create_tasks(conn, [row], now)
            place.update(_content_columns(item), task_id=row["id"], skip_reason=None)
            report.added.append(item.item_id)
        elif item.checked and not s.done:
            if _mark_checked(conn, lst, s, now):
                place["checked"] = True
                report.checked.append(item.item_id)
            else:
                report.notes.append(f"{item.item_id} is checked in the file but is {s.state}")
        elif s.unstarted and _content(s) != _content(item):
            _update_task(conn, s, item, lst.path, now)
            place.update(_content_columns(item))
            report.updated.append(item.item_id)
        executor.set_item(conn, s.row_id, now, **place)
    in_file = parsed.by_id()
    for s in found:
        if s.item_id in in_file or not s.in_file:
            continue
        if s.unstarted:
            _skip(conn, lst, s, "removed_from_list", now)
            executor.set_item(conn, s.row_id, now, in_file=False, skip_reason="removed_from_list")
            report.removed.append(s.item_id)
        else:
            executor.set_item(conn, s.row_id, now, in_file=False)
            if not s.final:
                report.notes.append(f"{s.item_id} left the file but is {s.state}; left to finish")
    create_tasks(conn, new_rows, now)
    if new_links:
        conn.execute(insert(TaskListItem), new_links)
    report.total = len(parsed.items)
    return report


def _content_columns(item: Item) -> dict[str, Any]:
    return {
        "section": item.section,
        "priority": item.label,
        "title": item.title,
        "details": item.details,
        "dependencies": list(item.dependencies),
    }


def _content(item: Item | StoredItem) -> tuple[Any, ...]:
    return (item.title, item.details, item.section, item.priority, tuple(item.dependencies))


def _mark_checked(conn: Connection, lst: ListRow, s: StoredItem, now: datetime) -> bool:
    """Checked in the file since the last load: done by hand, so it will not run."""
    if s.state in (TaskState.RUNNING, TaskState.COMPLETED):
        return False
    if s.state not in (TaskState.SKIPPED, TaskState.CANCELLED):
        _skip(conn, lst, s, "checked_in_file", now)
    return True


def _skip(conn: Connection, lst: ListRow, s: StoredItem, reason: str, now: datetime) -> None:
    payload = {"reason": reason, "item_id": s.item_id, "list": lst.path}
    move_task(conn, s.task_id, TaskState.SKIPPED, events=[("task_skipped", payload)], now=now)


def _update_task(conn: Connection, s: StoredItem, item: Item, path: str, now: datetime) -> None:
    rows = conn.execute(
        update(Task)
        .where(Task.id == s.task_id, Task.attempts == 0)
        .values(
            kwargs=item_kwargs(item, path),
            priority=store.LEDGER_PRIORITY[item.priority],
            title=f"{item.item_id}: {item.title}"[:500],
            updated_at=now,
        )
        .returning(Task.id, Task.goal_id)
    ).all()
    fields = ("title", "details", "section", "priority", "dependencies")
    pairs = zip(fields, _content(s), _content(item), strict=True)
    changed = [name for name, before, after in pairs if before != after]
    event = ("task_updated", {"reason": "list_reloaded", "fields": changed})
    write_events(conn, list(rows), [event], now)  # type: ignore[arg-type]


def record_load(conn: Connection, lst: ListRow, report: LoadReport, now: datetime) -> None:
    from jobs.transitions import record_goal_event

    record_goal_event(
        conn,
        lst.goal_id,
        "list_rebuilt" if report.rebuilt else "list_loaded",
        {
            "list": lst.path,
            "added": len(report.added),
            "updated": len(report.updated),
            "removed": len(report.removed),
            "checked": len(report.checked),
            "problems": len(report.problems),
        },
        now=now,
    )
