"""``taskledger``: run the system, see it work, inspect the ledger.

taskledger up          worker + beat (+ migrations); embedded SQLite by default
taskledger demo        a goal with a flaky step, followed live
taskledger db upgrade  apply migrations
taskledger stats | tasks | show ID | peek | cancel ID | requeue ID | resume GOAL
"""

from __future__ import annotations

import signal
import time
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from jobs import queries
from jobs.errors import TaskledgerError
from models import GoalStatus, TaskState
from models.db import transaction
from models.migrate import upgrade as migrate_upgrade
from models.settings import Settings, get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
app.add_typer(db_app, name="db")
console = Console()

STATE_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "retry_wait": "yellow",
    "queued": "white",
    "blocked": "dim",
}


def _describe(settings: Settings) -> str:
    mode = "embedded" if settings.is_embedded_broker else "servers"
    db = settings.resolved_database_url.split("@")[-1]
    return f"[bold]taskledger[/] ({mode}) database: {db}  broker: {settings.resolved_broker_url}"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (creates the SQLite file in embedded mode)."""
    migrate_upgrade()
    console.print("[green]database is at the latest revision[/]")


@app.command()
def up(
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 0,
    autoscale: Annotated[str, typer.Option(help="max,min worker processes, e.g. 8,2")] = "",
) -> None:
    """Run a worker and beat (and apply migrations) until Ctrl-C."""
    from cli.services import running

    settings = get_settings()
    console.print(_describe(settings))
    migrate_upgrade()
    stop = {"now": False}
    # Both, explicitly: a shell's background job starts with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.update(now=True))
    with running(
        settings,
        concurrency=concurrency or settings.worker_concurrency,
        autoscale=autoscale or settings.worker_autoscale,
    ) as services:
        console.print(f"worker and beat are up; logs in {services.logs}. Ctrl-C stops them.")
        console.print("In another terminal: [bold]taskledger demo[/]")
        with Live(_stats_table(), console=console, refresh_per_second=2) as live:
            while not stop["now"]:
                services.check_alive()
                time.sleep(0.5)
                live.update(_stats_table())
        console.print("stopping worker and beat...")
    console.print("stopped.")


def _stats_table() -> Table:
    with transaction() as conn:
        st = queries.stats(conn)
    table = Table(title="tasks by state", show_edge=False)
    for state in st.counts:
        table.add_column(state, justify="right", style=STATE_STYLE.get(state, ""))
    table.add_row(*(str(n) for n in st.counts.values()))
    table.caption = (
        f"avg wait {_ms(st.avg_wait_ms)}, avg processing {_ms(st.avg_processing_ms)} "
        f"over {st.completed} completed"
    )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@app.command()
def demo(
    topic: Annotated[str, typer.Option(help="what the demo agent researches")] = "durable queues",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the goal")] = 120,
) -> None:
    """Run a three-step goal whose middle step fails twice, and follow it live."""
    from cli.services import already_up, running
    from jobs import operations
    from workers.app import app as celery_app

    settings = get_settings()
    console.print(_describe(settings))
    migrate_upgrade()
    steps: list[operations.StepCall] = [
        ("demo.plan", (topic,), {}, {}),
        ("demo.fetch", ("docs",), {"fail_times": 2}, {"max_retries": 3}),
        ("demo.summarise", (topic,), {}, {"metadata": {"expected_output": "a summary"}}),
    ]

    def run_goal() -> bool:
        goal_id = operations.create_goal(
            celery_app, title=f"research {topic}", user_id="demo", steps=steps
        )
        console.print(f"goal [bold]{goal_id}[/] created with {len(steps)} steps")
        return _follow_goal(goal_id, timeout)

    if already_up(settings.home):
        ok = run_goal()
    else:
        console.print("starting an embedded worker and beat for the demo...")
        with running(settings, concurrency=settings.worker_concurrency):
            ok = run_goal()
    raise typer.Exit(0 if ok else 1)


def _follow_goal(goal_id: uuid.UUID, timeout: float) -> bool:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    status = GoalStatus.OPEN
    with console.status("waiting for the goal...") as spinner:
        while time.monotonic() < deadline:
            with transaction() as conn:
                status = queries.get_goal(conn, goal_id).status
                events = list(reversed(queries.goal_events(conn, goal_id, limit=1000)))
                steps = queries.list_by_goal(conn, goal_id)
            for event in events:
                if event.id not in seen:
                    seen.add(event.id)
                    console.print(_event_line(event, steps))
            done = sum(s.state in (TaskState.COMPLETED, TaskState.SKIPPED) for s in steps)
            spinner.update(f"{done}/{len(steps)} steps done, goal {status}")
            if status in (GoalStatus.COMPLETED, GoalStatus.FAILED, GoalStatus.CANCELLED):
                break
            time.sleep(0.2)
    console.print(_steps_table(steps))
    style = "green" if status is GoalStatus.COMPLETED else "red"
    console.print(f"goal {goal_id}: [{style}]{status}[/]")
    return status is GoalStatus.COMPLETED


def _event_line(event: Any, steps: list[Any]) -> str:
    names = {s.id: f"step {s.step_index} {s.name}" for s in steps}
    who = names.get(event.task_id, "goal") if event.task_id else "goal"
    detail = ", ".join(f"{k}={v}" for k, v in event.payload.items() if k not in ("name",))
    return f"{event.created_at:%H:%M:%S.%f}"[:-3] + f"  {who:<24} {event.event_type:<26} {detail}"


def _steps_table(steps: list[Any]) -> Table:
    table = Table("step", "task", "state", "attempts", "verification", "result", show_edge=False)
    for s in steps:
        state = str(s.state)
        table.add_row(
            str(s.step_index),
            s.name,
            f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            str(s.attempts),
            str(s.verification_status),
            str(s.result)[:60],
        )
    return table


@app.command()
def stats(session: Annotated[str | None, typer.Option(help="one session only")] = None) -> None:
    """Counts by state, average wait and processing time (seed 004)."""
    with transaction() as conn:
        st = queries.stats(conn, session_id=session)
    table = Table("state", "tasks", show_edge=False)
    for state, n in st.counts.items():
        table.add_row(state, str(n))
    console.print(table)
    console.print(f"avg wait {_ms(st.avg_wait_ms)}; avg processing {_ms(st.avg_processing_ms)}")


@app.command("tasks")
def list_tasks(
    state: Annotated[TaskState | None, typer.Option(help="only this state")] = None,
    session: Annotated[str | None, typer.Option(help="only this session")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The newest tasks."""
    with transaction() as conn:
        rows = queries.list_tasks(conn, state=state, session_id=session, limit=limit)
    _print_tasks(rows)


@app.command()
def peek(
    session: Annotated[str | None, typer.Option(help="only this session")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
) -> None:
    """The queued tasks that go next, without taking them (seed 004)."""
    with transaction() as conn:
        rows = queries.peek(conn, session_id=session, limit=limit)
    _print_tasks(rows)


def _print_tasks(rows: list[Any]) -> None:
    table = Table("id", "name", "session", "state", "prio", "attempts", "created", show_edge=False)
    for r in rows:
        state = str(r.state)
        table.add_row(
            str(r.id),
            r.name,
            r.session_id or "-",
            f"[{STATE_STYLE.get(state, '')}]{state}[/]",
            str(r.priority),
            str(r.attempts),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@app.command()
def show(task_id: uuid.UUID) -> None:
    """One task and its audit trail, newest event first."""
    with transaction() as conn:
        row = queries.get_task(conn, task_id)
        events = queries.task_events(conn, task_id, limit=1000)
    for key in (
        "id",
        "name",
        "state",
        "session_id",
        "goal_id",
        "step_index",
        "priority",
        "attempts",
        "retries",
        "max_retries",
        "backoff_until",
        "scheduled_for",
        "worker_id",
        "last_outcome",
        "last_error",
        "verification_status",
        "result",
    ):
        console.print(f"[bold]{key:>20}[/] {getattr(row, key)}")
    table = Table("at", "event", "payload", show_edge=False)
    for e in events:
        table.add_row(f"{e.created_at:%H:%M:%S.%f}"[:-3], e.event_type, str(e.payload))
    console.print(table)


@app.command()
def cancel(task_id: uuid.UUID) -> None:
    """Cancel a task; running code gets its cancellation signal."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.cancel_task(celery_app, task_id, reason="cancelled from the CLI")
    console.print(f"task {task_id} cancelled")


@app.command()
def requeue(task_id: uuid.UUID) -> None:
    """Put a failed task back in the queue with a fresh retry budget."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.requeue(celery_app, task_id)
    console.print(f"task {task_id} queued again")


@app.command()
def resume(goal_id: uuid.UUID) -> None:
    """Resume a goal from its first incomplete step (no replay)."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.resume_goal(celery_app, goal_id)
    console.print(f"goal {goal_id} resumed")


def main() -> None:
    try:
        app()
    except TaskledgerError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
