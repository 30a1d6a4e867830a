"""Agent safety from the shell: the approval inbox, pause and resume, cleanup, sessions.

taskledger approvals [--user U]            pending approvals, newest first, with the count
taskledger approve ID [--args JSON] [--kwargs JSON]
taskledger deny ID [--reason TEXT]
taskledger pause session|queue NAME        nothing new starts; running work finishes
taskledger resume session|queue NAME       releases held work, most urgent first
taskledger cleanup [--dry-run] [--days N]  retention: finished tasks older than N days
taskledger sessions [--user U]             sessions with owner, window, pause and counts
"""

from __future__ import annotations

import getpass
import json
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer

from cli.output import JsonOption, console, fail, print_json, row_dict, short_time, table

app = typer.Typer()

ByOption = Annotated[str, typer.Option("--by", help="who decides (default: your user name)")]


class Target(StrEnum):
    session = "session"
    queue = "queue"


def _who(by: str) -> str:
    return by or getpass.getuser()


def _json_arg(what: str, raw: str | None, kind: type) -> Any:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise fail(f"--{what} is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, kind):
        raise fail(f"--{what} must be a JSON {'list' if kind is list else 'object'}")
    return value


@app.command()
def approvals(
    user: Annotated[str | None, typer.Option("--user", help="only this owner's tasks")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Tasks waiting for approval, newest first, and how many there are."""
    from cli import reads  # plain SQL: no SQLAlchemy, ORM or Celery to import

    with reads.reading() as conn:
        rows, total = reads.pending_approvals(conn, user_id=user, limit=limit)
    if as_json:
        print_json({"count": total, "tasks": [row_dict(r) for r in rows]})
        return
    t = table(["id", "name", "session", "user", "created", "rule", "args"], free="args")
    for r in rows:
        rule = (r.policy_decision or {}).get("rule") or "-"
        t.add_row(
            str(r.id),
            r.name,
            r.session_id or "-",
            r.user_id or "-",
            short_time(r.created_at),
            str(rule),
            json.dumps({"args": r.args, "kwargs": r.kwargs}),
        )
    console().print(t)
    console().print(f"{total} pending approval(s)")


@app.command()
def approve(
    task_id: uuid.UUID,
    args: Annotated[
        str | None, typer.Option("--args", help="new positional args, JSON list")
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option("--kwargs", help="new keyword args, JSON object")
    ] = None,
    by: ByOption = "",
) -> None:
    """Approve a pending task (optionally with changed arguments); a worker picks it up."""
    from jobs import approvals as inbox
    from workers.app import app as celery_app

    new_args = _json_arg("args", args, list)
    new_kwargs = _json_arg("kwargs", kwargs, dict)
    row = inbox.approve(celery_app, task_id, by=_who(by), args=new_args, kwargs=new_kwargs)
    console().print(f"task {row.id} approved; it is {row.state}")


@app.command()
def deny(
    task_id: uuid.UUID,
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")] = "",
    by: ByOption = "",
) -> None:
    """Deny a pending task: it is cancelled and never runs."""
    from jobs import approvals as inbox
    from workers.app import app as celery_app

    row = inbox.deny(celery_app, task_id, by=_who(by), reason=reason)
    console().print(f"task {row.id} denied; it is {row.state}")


@app.command()
def pause(target: Target, name: str, by: ByOption = "") -> None:
    """Pause a session or a queue: nothing new starts; running work finishes."""
    from jobs import sessions
    from workers.app import app as celery_app

    fn = sessions.pause_session if target is Target.session else sessions.pause_queue
    changed = fn(celery_app, name, by=_who(by))
    console().print(f"{target} {name} " + ("paused" if changed else "was already paused"))


@app.command()
def resume(
    target: Annotated[str, typer.Argument(help="session, queue, or a goal id")],
    name: Annotated[str | None, typer.Argument(help="the session or queue")] = None,
    by: ByOption = "",
) -> None:
    """Resume a paused session or queue (held work is released, most urgent first);
    `resume GOAL_ID` resumes a goal from its first incomplete step, as before."""
    from jobs import operations, sessions
    from workers.app import app as celery_app

    if name is None:
        try:
            goal_id = uuid.UUID(target)
        except ValueError:
            raise fail(
                "say `resume session NAME`, `resume queue NAME` or `resume GOAL_ID`"
            ) from None
        operations.resume_goal(celery_app, goal_id)
        console().print(f"goal {goal_id} resumed")
        return
    if target not in (Target.session, Target.queue):
        raise fail(f"cannot resume {target!r}: choose session or queue")
    fn = sessions.resume_session if target == Target.session else sessions.resume_queue
    changed = fn(celery_app, name, by=_who(by))
    if not changed:
        raise fail(f"{target} {name} is not paused", code=1)
    console().print(f"{target} {name} resumed")


@app.command()
def cleanup(
    days: Annotated[
        int | None, typer.Option("--days", min=0, help="default TASKLEDGER_RETENTION_DAYS")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would go")] = False,
    batch: Annotated[int, typer.Option(min=1, help="rows per transaction")] = 1000,
) -> None:
    """Delete finished tasks (and their events) older than N days, in batches."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from jobs import retention
    from models.settings import get_settings

    keep = get_settings().retention_days if days is None else days
    if dry_run:
        counts = retention.cleanup(days=keep, dry_run=True, batch=batch)
    else:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console()) as bar:
            job = bar.add_task("deleting…", total=None)
            done = {"n": 0}

            def advance(n: int) -> None:
                done["n"] += n
                bar.update(job, description=f"deleted {done['n']} task(s)…")

            counts = retention.cleanup(days=keep, dry_run=False, batch=batch, progress=advance)
    verb = "would delete" if dry_run else "deleted"
    detail = ", ".join(f"{state} {n}" for state, n in counts.items())
    console().print(f"{verb} {sum(counts.values())} task(s) older than {keep} days: {detail}")


@app.command()
def sessions(
    user: Annotated[str | None, typer.Option("--user", help="only this owner's sessions")] = None,
    as_json: JsonOption = False,
) -> None:
    """Sessions with their owner, window, pause flag, labels and task counts per state."""
    from cli import reads

    with reads.reading() as conn:
        found = reads.list_sessions(conn, user_id=user)
        paused_queues = reads.paused_queues(conn)
    if as_json:
        print_json({"sessions": found, "paused_queues": paused_queues})
        return
    t = table(
        ["session", "user", "window", "paused", "labels", "counts"], id_columns=(), free="counts"
    )
    for s in found:
        t.add_row(
            s["id"],
            s["user_id"] or "-",
            str(s["window"]),
            "yes" if s["paused"] else "no",
            json.dumps(s["labels"]) if s["labels"] else "-",
            ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())) or "-",
        )
    console().print(t)
    if paused_queues:
        console().print(f"paused queues: {', '.join(paused_queues)}")
