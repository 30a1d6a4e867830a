"""Markdown task lists run by real workers: order, dependencies, reloads, executor controls."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from jobs import tasklists
from jobs.errors import InvalidTransition
from jobs.tasklists import status as list_status
from jobs.tasklists import store
from models import Goal, GoalStatus, TaskEvent, TaskState
from models.db import transaction
from models.task_list import ListStatus
from tests.support import list_tasks
from tests.support.services import Cluster, wait_for

pytestmark = pytest.mark.usefixtures("clean")
APP = list_tasks.app
HANDLER = "tl.item"


def write(folder: Path, body: str, name: str = "tasks.md") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def report(path: Path) -> list_status.ListStatusReport:
    with transaction() as conn:
        return list_status.list_status(conn, store.canonical_path(path))


def items(path: Path) -> dict[str, store.StoredItem]:
    return {i.item_id: i for i in report(path).items}


def order(counter: redis.Redis, path: Path, key: str = "order") -> list[str]:
    canonical = store.canonical_path(path)
    return [x.decode() for x in counter.lrange(f"{key}:{canonical}", 0, -1)]


def finished(path: Path, timeout: float = 60) -> list_status.ListStatusReport:
    def done() -> list_status.ListStatusReport | None:
        r = report(path)
        return r if r.lst.status is ListStatus.STOPPED and all(i.final for i in r.items) else None

    return wait_for(done, timeout, f"{path} to finish")


def goal_events(path: Path) -> list[str]:
    """The list's goal-level events, across every goal it had (a finished list that gets
    new work continues under a new goal)."""
    canonical = store.canonical_path(path)
    with transaction() as conn:
        goals = select(Goal.id).where(Goal.meta["task_list"].astext == canonical)
        rows = conn.execute(
            select(TaskEvent.event_type)
            .where(TaskEvent.goal_id.in_(goals), TaskEvent.task_id.is_(None))
            .order_by(TaskEvent.id)
        )
        return list(rows.scalars())


def test_runs_by_priority_then_position_respecting_dependencies(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        """\
        # Build
        ## Backend
        - [ ] [P3] A-1: plain, first in the file
        - [ ] [P1] A-2: urgent but waits for A-4 (depends: A-4)
        - [x] A-3: done by hand already
        - [ ] [P2] A-4: second most urgent (after A-3)
        ## Frontend
        - [ ] [P1] B-1: urgent
        - [ ] [P4] B-2: least urgent
          with a description line
        - [ ] B-3: depends on a checked item (depends: A-3)
        """,
    )
    loaded = tasklists.load(APP, path, handler=HANDLER)
    assert loaded.created and loaded.total == 7 and loaded.problems == []
    assert tasklists.start(APP, path).endswith("started")

    final = finished(path)
    # P1 first (B-1; A-2 is P1 but waits for A-4), then P2 A-4, which frees A-2 (P1),
    # then the P3s by position (A-1 before B-3), then P4. A-3 never runs.
    assert order(counter, path) == ["B-1", "A-4", "A-2", "A-1", "B-3", "B-2"]
    assert final.counts == {
        "total": 7,
        "completed": 7,
        "failed": 0,
        "skipped": 0,
        "running": 0,
        "waiting": 0,
    }
    assert counter.get(f"runs:{final.lst.path}:A-3") is None
    with transaction() as conn:
        goal = conn.execute(select(Goal.status).where(Goal.id == final.lst.goal_id)).scalar_one()
    assert goal is GoalStatus.COMPLETED
    assert goal_events(path)[-2:] == ["list_finished", "goal_completed"]
    b2 = items(path)["B-2"]
    assert b2.details == "with a description line" and b2.section == "Frontend"


def test_dependency_failure_skips_dependents_naming_it(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        """\
        - [ ] C-1: fails for good
        - [ ] C-2: needs C-1 (depends: C-1)
        - [ ] C-3: needs C-2 (after C-2)
        - [ ] C-4: independent
        """,
    )
    counter.set("fail:C-1", 1)
    tasklists.load(APP, path, handler=HANDLER)
    tasklists.start(APP, path)
    final = finished(path)
    by_id = {i.item_id: i for i in final.items}
    assert by_id["C-1"].state is TaskState.FAILED
    assert by_id["C-2"].skip_reason == "dependency_failed: C-1"
    assert by_id["C-3"].skip_reason == "dependency_failed: C-2"
    assert by_id["C-4"].state is TaskState.COMPLETED
    assert order(counter, path) == ["C-1", "C-4"]  # PermanentError: one attempt, no retry
    assert (final.counts["failed"], final.counts["skipped"]) == (1, 2)

    # requeue C-1 once it can succeed: its dependents come back and run, in order
    counter.delete("fail:C-1")
    message = tasklists.requeue(APP, path, "C-1")
    assert "2 dependent" in message
    tasklists.start(APP, path)
    final = finished(path)
    assert all(i.state is TaskState.COMPLETED for i in final.items)
    assert order(counter, path)[2:] == ["C-1", "C-2", "C-3"]


def test_pause_resume_skip_requeue_are_idempotent_and_audited(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        """\
        - [ ] D-1: slow
        - [ ] D-2: next
        - [ ] D-3: to skip
        - [ ] D-4: after the skipped one (depends: D-3)
        """,
    )
    counter.set("sleep:D-1", 1.5)
    tasklists.load(APP, path, handler=HANDLER)
    tasklists.start(APP, path)
    canonical = store.canonical_path(path)
    wait_for(lambda: counter.get(f"running:{canonical}:D-1"), 20, "D-1 running")

    assert tasklists.pause(APP, path).endswith("nothing new starts")
    assert "already paused" in tasklists.pause(APP, path)
    # the running item finishes; nothing new starts while paused
    wait_for(lambda: items(path)["D-1"].state is TaskState.COMPLETED, 20, "D-1 completed")
    time.sleep(1.0)
    assert order(counter, path) == ["D-1"]
    assert report(path).lst.status is ListStatus.PAUSED

    assert tasklists.skip(APP, path, "D-3") == "D-3 skipped"
    assert "already skipped" in tasklists.skip(APP, path, "D-3")
    with pytest.raises(InvalidTransition):
        tasklists.skip(APP, path, "D-1")  # completed
    assert items(path)["D-4"].skip_reason == "dependency_failed: D-3"

    assert tasklists.resume(APP, path).endswith("resumed")
    assert "already running" in tasklists.resume(APP, path)
    final = finished(path)
    assert order(counter, path) == ["D-1", "D-2"]
    assert final.counts["skipped"] == 2

    assert "queued again" in tasklists.requeue(APP, path, "D-3")
    assert "already waiting" in tasklists.requeue(APP, path, "D-3")
    with pytest.raises(InvalidTransition):
        tasklists.requeue(APP, path, "D-1")
    tasklists.start(APP, path)
    finished(path)
    assert order(counter, path) == ["D-1", "D-2", "D-3", "D-4"]
    events = goal_events(path)
    for expected in ("list_loaded", "list_started", "list_paused", "list_resumed"):
        assert expected in events
    assert "list_item_requeued" in events


def test_stop_cancels_the_running_item_after_its_grace_and_start_runs_it_again(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    path = write(tmp_path, "- [ ] E-1: long\n- [ ] E-2: short\n")
    counter.set("sleep:E-1", 30)
    tasklists.load(APP, path, handler=HANDLER)
    tasklists.start(APP, path)
    canonical = store.canonical_path(path)
    wait_for(lambda: counter.get(f"running:{canonical}:E-1"), 20, "E-1 running")

    stopped_at = time.monotonic()
    assert "cancelled if still running" in tasklists.stop(APP, path, grace_s=1.0)
    assert "already stopped" in tasklists.stop(APP, path, grace_s=1.0)
    # the list sweep cancels it once the grace is over; the handler sees the signal
    wait_for(lambda: not counter.get(f"running:{canonical}:E-1"), 20, "E-1 cancelled")
    waited = time.monotonic() - stopped_at
    print(f"\nstop with a 1 s grace: running item cancelled after {waited:.2f} s")
    assert waited >= 0.9
    state = items(path)["E-1"]
    assert state.state is TaskState.BLOCKED  # a fresh task waits for the next start
    assert order(counter, path) == ["E-1"]

    counter.set("sleep:E-1", 0.05)
    tasklists.start(APP, path)
    final = finished(path)
    assert order(counter, path) == ["E-1", "E-1", "E-2"]
    assert all(i.state is TaskState.COMPLETED for i in final.items)


def test_reload_after_editing_adds_removes_changes_and_keeps_completed(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    first = """\
        # Project
        - [ ] F-1: will complete
        - [ ] F-2: will be removed
        - [ ] F-3: old text
        - [ ] F-4: will be checked by hand
        """
    path = write(tmp_path, first)
    tasklists.load(APP, path, handler=HANDLER)
    # run only F-1: skip the others for now by pausing right after it
    counter.set("sleep:F-1", 0.5)
    tasklists.start(APP, path)
    canonical = store.canonical_path(path)
    wait_for(lambda: counter.get(f"running:{canonical}:F-1"), 20, "F-1 running")
    tasklists.pause(APP, path)
    wait_for(lambda: items(path)["F-1"].state is TaskState.COMPLETED, 20, "F-1 completed")

    # the same file again, through another spelling of its path: nothing changes
    other_spelling = tmp_path / "sub" / ".." / "tasks.md"
    (tmp_path / "sub").mkdir()
    again = tasklists.load(APP, other_spelling)
    assert (again.added, again.updated, again.removed, again.checked) == ([], [], [], [])

    write(
        tmp_path,
        """\
        # Project
        - [ ] F-0: new, first in the file
        - [ ] F-1: will complete (text edited after it ran)
        - [ ] [P2] F-3: new text
        - [x] F-4: will be checked by hand
        - [ ] F-5: new at the end (depends: F-3)
        """,
    )
    edited = tasklists.load(APP, path)
    assert sorted(edited.added) == ["F-0", "F-5"]
    assert edited.updated == ["F-3"]
    assert edited.removed == ["F-2"]
    assert edited.checked == ["F-4"]
    by_id = items(path)
    assert by_id["F-1"].state is TaskState.COMPLETED and by_id["F-1"].title == "will complete"
    assert by_id["F-2"].skip_reason == "removed_from_list" and not by_id["F-2"].in_file
    assert (by_id["F-3"].title, by_id["F-3"].priority) == ("new text", 2)
    assert [i.item_id for i in sorted(by_id.values(), key=lambda i: i.position)][:2] == [
        "F-0",
        "F-1",
    ]

    # F-2 comes back at the end of the file: it runs after all
    with path.open("a") as f:
        f.write("- [ ] F-2: will be removed, then come back\n")
    back = tasklists.load(APP, path)
    assert back.added == ["F-2"] and back.removed == []
    assert items(path)["F-2"].state is TaskState.BLOCKED

    tasklists.resume(APP, path)
    final = finished(path)
    # F-3 is P2 now: first; then the P3s by position. F-1 never runs again, F-4 never runs.
    assert order(counter, path) == ["F-1", "F-3", "F-0", "F-5", "F-2"]
    assert final.counts["completed"] == 6 and final.counts["skipped"] == 0
    runs = int(counter.get(f"runs:{canonical}:F-1"))
    assert runs == 1


def test_a_cycle_is_refused_with_the_cycle_spelled_out(cluster: Cluster, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- [ ] G-1: a (depends: G-3)\n- [ ] G-2: b (depends: G-1)\n- [ ] G-3: c (after G-2)\n",
    )
    with pytest.raises(store.DependencyCycle, match=r"G-1 -> G-3 -> G-2 -> G-1"):
        tasklists.load(APP, path, handler=HANDLER)
    with transaction() as conn, pytest.raises(store.ListNotLoaded):
        store.require_list(conn, store.canonical_path(path))


def test_unreadable_stored_queue_is_rebuilt_from_the_file(
    cluster: Cluster, counter, tmp_path: Path, caplog
) -> None:
    path = write(tmp_path, "- [ ] H-1: one\n- [ ] H-2: two\n- [ ] H-3: three\n")
    tasklists.load(APP, path, handler=HANDLER)
    tasklists.start(APP, path)
    finished(path)
    write(tmp_path, "- [ ] H-1: one\n- [ ] H-2: two\n- [ ] H-3: three\n- [ ] H-4: four\n")
    # the stored queue is damaged: an item's dependencies are no longer a list
    from sqlalchemy import text

    with transaction() as conn:
        conn.execute(text("UPDATE task_list_items SET dependencies = '\"garbage\"'::jsonb"))
    with caplog.at_level("WARNING", logger="taskledger.tasklists"):
        rebuilt = tasklists.load(APP, path)
    assert rebuilt.rebuilt and rebuilt.added == ["H-4"]
    assert "rebuilding it from the file" in caplog.text
    tasklists.start(APP, path)
    finished(path)
    assert order(counter, path) == ["H-1", "H-2", "H-3", "H-4"]  # nothing finished is redone


def test_two_lists_run_at_once_without_touching_each_other(
    cluster: Cluster, counter, tmp_path: Path
) -> None:
    one = write(tmp_path, "".join(f"- [ ] X-{i}: x{i}\n" for i in range(6)), "one.md")
    two = write(tmp_path, "".join(f"- [ ] Y-{i}: y{i}\n" for i in range(6)), "two.md")
    for i in range(6):
        counter.set(f"sleep:X-{i}", 0.3)
        counter.set(f"sleep:Y-{i}", 0.3)
    tasklists.load(APP, one, handler=HANDLER)
    tasklists.load(APP, two, handler=HANDLER)
    tasklists.start(APP, one)
    tasklists.start(APP, two)
    both = {store.canonical_path(one), store.canonical_path(two)}

    overlap = wait_for(
        lambda: all(
            any(counter.get(f"running:{p}:{x}-{i}") for x in "XY" for i in range(6)) for p in both
        ),
        30,
        "both lists running at the same moment",
        interval=0.02,
    )
    assert overlap
    finished(one)
    finished(two)
    assert order(counter, one) == [f"X-{i}" for i in range(6)]
    assert order(counter, two) == [f"Y-{i}" for i in range(6)]


def test_cli_status_graph_and_overview(cluster: Cluster, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, "# Demo\n## S\n- [ ] [P2] K-1: one\n- [ ] K-2: two (depends: K-1)\n")
    env = dict(os.environ, COLUMNS="200")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "lists", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    loaded = cli("load", str(path), "--handler", HANDLER)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded" in loaded.stdout and "2 items" in loaded.stdout
    shown = cli("status", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "executor stopped" in shown.stdout and "K-1" in shown.stdout
    graph = cli("graph", str(path))
    assert graph.stdout.startswith("flowchart TD") and "i_K_1 --> i_K_2" in graph.stdout
    overview = cli()
    assert str(store.canonical_path(path)) in overview.stdout.replace("\n", "")
    missing = cli("status", str(tmp_path / "nope.md"))
    assert missing.returncode != 0 and "no task list is loaded" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr
