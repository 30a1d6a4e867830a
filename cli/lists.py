"""``taskledger lists``: markdown task lists and their executors (seed 001).

taskledger lists                         every list, with a progress bar and counts
taskledger lists load FILE --handler N   load (or reload after an edit) a list
taskledger lists start|pause|resume|stop|status|graph FILE
taskledger lists skip|requeue FILE ITEM_ID

FILE may be any path to the same file (relative, with '..', through a symlink).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import console, styled

if TYPE_CHECKING:
    from jobs.tasklists.report import ListStatusReport

app = typer.Typer(
    help="Markdown task lists: load a file, run its items as durable tasks, follow them.",
    invoke_without_command=True,
    no_args_is_help=False,
)
FileArg = Annotated[str, typer.Argument(help="the task list file (any path to it)")]
ItemArg = Annotated[str, typer.Argument(help="the item's id, e.g. EXE-004")]


def _celery() -> Any:
    from workers.app import app as celery_app

    return celery_app


@app.callback()
def overview(ctx: typer.Context) -> None:
    """Without a command: every loaded list with its progress."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    from cli import reads

    with reads.reading() as conn:
        rows = reads.all_lists(conn)
    if not rows:
        console().print("no task lists loaded; `taskledger lists load FILE --handler NAME`")
        return
    table = Table("list", "executor", "progress", "done", "ok", "failed", "skipped", "left")
    for lst, c in rows:
        finished = c["completed"] + c["failed"] + c["skipped"]
        table.add_row(
            lst.path,
            styled(lst.status),
            ProgressBar(total=max(c["total"], 1), completed=finished, width=24),
            f"{finished}/{c['total']}",
            str(c["completed"]),
            str(c["failed"]),
            str(c["skipped"]),
            str(c["running"] + c["waiting"]),
        )
    console().print(table)


@app.command()
def load(
    file: FileArg,
    handler: Annotated[
        str | None, typer.Option(help="durable task each item runs as (first load)")
    ] = None,
    session: Annotated[str | None, typer.Option(help="session the items run in")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="items at once (1)")] = None,
    max_retries: Annotated[int | None, typer.Option(min=0, help="retries per item")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per attempt")] = None,
) -> None:
    """Load a task list, or load it again after editing it (idempotent)."""
    from jobs import tasklists

    report = tasklists.load(
        _celery(),
        file,
        handler=handler,
        session_id=session,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout_s=timeout,
    )
    out = console()
    for problem in report.problems:
        out.print(f"[yellow]warning:[/] {problem}", soft_wrap=True)
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    verb = "loaded" if report.created else "rebuilt" if report.rebuilt else "reloaded"
    out.print(
        f"{verb} {report.path}: {report.total} items ({len(report.added)} added, "
        f"{len(report.updated)} updated, {len(report.removed)} removed, "
        f"{len(report.checked)} newly checked, {len(report.problems)} problem line(s))",
        soft_wrap=True,
    )


@app.command()
def start(
    file: FileArg,
    concurrency: Annotated[int | None, typer.Option(min=1, help="items at once")] = None,
) -> None:
    """Start (or restart) the list's executor."""
    from jobs import tasklists

    console().print(tasklists.start(_celery(), file, concurrency=concurrency), soft_wrap=True)


@app.command()
def pause(file: FileArg) -> None:
    """Pause: running items finish, nothing new starts."""
    from jobs import tasklists

    console().print(tasklists.pause(_celery(), file), soft_wrap=True)


@app.command()
def resume(file: FileArg) -> None:
    """Resume a paused (or stopped) list."""
    from jobs import tasklists

    console().print(tasklists.resume(_celery(), file), soft_wrap=True)


@app.command()
def stop(
    file: FileArg,
    grace: Annotated[
        float | None,
        typer.Option(min=0, help="seconds running items get before they are cancelled"),
    ] = None,
) -> None:
    """Stop: nothing new starts; running items are cancelled after the grace (run again on
    the next start)."""
    from jobs import tasklists

    console().print(tasklists.stop(_celery(), file, grace_s=grace), soft_wrap=True)


@app.command()
def skip(file: FileArg, item_id: ItemArg) -> None:
    """Skip one item (its dependents are skipped too: dependency_failed)."""
    from jobs import tasklists

    console().print(tasklists.skip(_celery(), file, item_id), soft_wrap=True)


@app.command()
def requeue(file: FileArg, item_id: ItemArg) -> None:
    """Run a failed, skipped or cancelled item again, with the items skipped because of it."""
    from jobs import tasklists

    console().print(tasklists.requeue(_celery(), file, item_id), soft_wrap=True)


@app.command()
def status(file: FileArg) -> None:
    """The executor's state, counters, forecast, and the active queue (v_active_queue)."""
    from cli import reads
    from jobs.tasklists.rows import canonical_path

    path = canonical_path(file)
    with reads.reading() as conn:
        report = reads.list_status(conn, path)
    _print_status(report)


def _print_status(report: ListStatusReport) -> None:
    from datetime import UTC, datetime

    from rich.progress_bar import ProgressBar
    from rich.table import Table

    lst, c, out = report.lst, report.counts, console()
    out.print(f"[bold]{lst.title}[/]  {lst.path}", soft_wrap=True)
    cfg = lst.config
    out.print(
        f"executor {styled(lst.status)}  handler {cfg.handler}  session {cfg.session_id or '-'}"
        f"  concurrency {cfg.concurrency}  goal {lst.goal_id}",
        soft_wrap=True,
    )
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=max(c["total"], 1), completed=report.done, width=40),
        f"{report.done}/{c['total']} done: {c['completed']} completed, {c['failed']} failed, "
        f"{c['skipped']} skipped; {c['running']} running, {c['waiting']} waiting",
    )
    out.print(grid)
    times = [
        f"{name} {value:%Y-%m-%d %H:%M:%S}"
        for name, value in (
            ("started", lst.started_at),
            ("paused", lst.paused_at),
            ("stopped", lst.stopped_at),
        )
        if value is not None
    ]
    out.print(f"current item {lst.current_item_id or '-'}   {'   '.join(times)}", soft_wrap=True)
    out.print(f"predicted finish: {report.forecast.describe(datetime.now(UTC))}", soft_wrap=True)
    if report.active:
        table = Table("pos", "item", "prio", "status", "attempts", "section", "description")
        table.title = "active queue (v_active_queue)"
        for row in report.active:
            table.add_row(
                str(row.position),
                row.task_id,
                row.priority,
                styled(row.status),
                str(row.attempts),
                row.section or "-",
                row.description,
            )
        out.print(table)
    ended = [i for i in report.items if i.dead]
    if ended:
        table = Table("item", "state", "why", title="failed and skipped")
        for i in ended:
            why = i.skip_reason or (i.last_error or "")
            table.add_row(i.item_id, styled(i.state), why[:100])
        out.print(table)


@app.command()
def graph(file: FileArg) -> None:
    """The dependency graph as Mermaid (with each item's state once the list is loaded)."""
    import psycopg

    from cli import reads
    from jobs.tasklists import graph as list_graph
    from jobs.tasklists.report import file_nodes
    from jobs.tasklists.rows import canonical_path
    from models.settings import NotConfigured

    path = canonical_path(file)
    try:
        with reads.reading() as conn:
            nodes = reads.graph_nodes(conn, path)
    except (NotConfigured, psycopg.Error):  # no database configured or reachable: the file
        nodes = file_nodes(path)
    typer.echo(list_graph.mermaid(nodes), nl=False)
