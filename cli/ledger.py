"""Read-only views of the ledger: ``stats``, ``tasks``, ``peek``, ``show``, ``goals``, ``goal``.

Every query is one of ``cli.reads``: plain SQL over psycopg returning the rows of
``jobs.queries``, so that these commands start without SQLAlchemy, the ORM and Celery.
This module only prints.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from cli.output import (
    JsonOption,
    WideOption,
    console,
    fail,
    fields,
    print_json,
    row_dict,
    short_time,
    show_table,
    styled,
    table,
)

app = typer.Typer()

SessionOption = Annotated[str | None, typer.Option(help="only this session")]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@app.command()
def stats(session: SessionOption = None, as_json: JsonOption = False) -> None:
    """Counts by state, average wait and processing time, open circuit breakers and each
    pulling agent's last pull."""
    from cli import reads

    with reads.reading() as conn:
        st = reads.stats(conn, session_id=session)
        breakers = reads.open_breakers(conn)
        agents = reads.agents(conn)
    if as_json:
        print_json({**st, "open_breakers": breakers, "agents": agents})
        return
    t = table(["state", "tasks"], id_columns=())
    for state, n in st["counts"].items():
        t.add_row(styled(state), str(n))
    console().print(t)
    console().print(
        f"avg wait {_ms(st['avg_wait_ms'])}; avg processing {_ms(st['avg_processing_ms'])} "
        f"over {st['completed']} completed"
    )
    for b in breakers:
        console().print(
            f"circuit breaker [red]{b['state']}[/]: {b['name']} "
            f"({b['consecutive_failures']} failures in a row, opened {b['opened_at']})"
        )
    for a in agents:
        console().print(f"agent {a['agent_id']}: last pull {a['last_pull_at']}")


def _task_state(value: str | None) -> str | None:
    from models.states import TaskState

    if value is None:
        return None
    try:
        return TaskState(value).value
    except ValueError:
        raise fail(f"no state {value!r}; one of: {', '.join(s.value for s in TaskState)}") from None


@app.command("tasks")
def list_tasks(
    state: Annotated[str | None, typer.Option(help="only this state (queued, running…)")] = None,
    session: SessionOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """The newest tasks."""
    from cli import reads

    wanted = _task_state(state)
    with reads.reading() as conn:
        rows = reads.list_tasks(conn, state=wanted, session_id=session, limit=limit)
    _print_tasks(rows, as_json, wide)


@app.command()
def peek(
    session: SessionOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """The queued tasks that go next, without taking them."""
    from cli import reads

    with reads.reading() as conn:
        rows = reads.peek(conn, session_id=session, limit=limit)
    _print_tasks(rows, as_json, wide)


def _print_tasks(rows: list[Any], as_json: bool, wide: bool) -> None:
    if as_json:
        print_json([row_dict(r) for r in rows])
        return
    t = table(["id", "name", "state", "session", "prio", "tries", "created"])
    for r in rows:
        t.add_row(
            str(r.id),
            r.name,
            styled(r.state),
            r.session_id or "-",
            str(r.priority),
            str(r.attempts),
            short_time(r.created_at),
        )
    show_table(t, wide)


@app.command()
def show(
    task_id: Annotated[uuid.UUID, typer.Argument(help="a task id (see `taskledger tasks`)")],
    as_json: JsonOption = False,
) -> None:
    """One task: arguments, result, timestamps and its events, oldest first."""
    from cli import reads

    with reads.reading() as conn:
        row = reads.get_task(conn, task_id)
        if row is None:
            is_goal = reads.get_goal(conn, task_id) is not None
            hint = f"; it is a goal: taskledger goal {task_id}" if is_goal else ""
            raise fail(f"no task {task_id}{hint}")
        events = list(reversed(reads.task_events(conn, task_id, limit=1000)))
    if as_json:
        print_json({**row_dict(row), "events": [row_dict(e) for e in events]})
        return
    fields(
        {
            "id": row.id,
            "name": row.name,
            "state": row.state,
            "session": row.session_id,
            "goal": row.goal_id and f"{row.goal_id} (step {row.step_index})",
            "args": row.args,
            "kwargs": row.kwargs,
            "result": row.result,
            "last error": row.last_error,
            "last outcome": row.last_outcome,
            "verification": row.verification_status,
            "priority": row.priority,
            "attempts": f"{row.attempts} (retries {row.retries} of {row.max_retries})",
            "worker": row.worker_id,
            "created": row.created_at,
            "scheduled for": row.scheduled_for,
            "started": row.started_at,
            "finished": row.finished_at,
            "backoff until": row.backoff_until,
        }
    )
    _print_events(events, steps=None)


def _print_events(events: list[Any], steps: dict[Any, str] | None) -> None:
    from rich.markup import escape

    columns = (
        ["at", "step", "event", "details"] if steps is not None else ["at", "event", "details"]
    )
    t = table(columns, id_columns=())
    for e in events:
        at = f"{e.created_at:%H:%M:%S.%f}"[:-3]
        details = escape(", ".join(f"{k}={v}" for k, v in e.payload.items()))
        cells = [at, e.event_type, details]
        if steps is not None:
            cells.insert(1, steps.get(e.task_id, "goal") if e.task_id else "goal")
        t.add_row(*cells)
    console().print(t)


@app.command()
def goals(
    status: Annotated[str | None, typer.Option(help="open, in_progress, completed…")] = None,
    user: Annotated[str | None, typer.Option(help="only this user")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """The newest goals."""
    from cli import reads
    from models.states import GoalStatus

    try:
        wanted = None if status is None else GoalStatus(status).value
    except ValueError:
        raise fail(
            f"no goal status {status!r}; one of: {', '.join(s.value for s in GoalStatus)}"
        ) from None
    with reads.reading() as conn:
        rows = reads.list_goals(conn, user_id=user, status=wanted, limit=limit)
    if as_json:
        print_json([row_dict(r) for r in rows])
        return
    t = table(["id", "title", "status", "user", "created"])
    for r in rows:
        t.add_row(str(r.id), r.title, styled(r.status), r.user_id or "-", short_time(r.created_at))
    show_table(t, wide)


@app.command()
def goal(
    goal_id: Annotated[uuid.UUID, typer.Argument(help="a goal id (see `taskledger goals`)")],
    events: Annotated[bool, typer.Option("--events", help="also print the goal's events")] = False,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """One goal and its steps in order, with their states."""
    from cli import reads

    with reads.reading() as conn:
        row = reads.get_goal(conn, goal_id)
        if row is None:
            raise fail(f"no goal {goal_id}")
        steps = reads.list_by_goal(conn, goal_id, limit=1000)
        trail = list(reversed(reads.goal_events(conn, goal_id, limit=1000))) if events else []
    if as_json:
        print_json(
            {
                **row_dict(row),
                "steps": [row_dict(s) for s in steps],
                **({"events": [row_dict(e) for e in trail]} if events else {}),
            }
        )
        return
    fields({"goal": row.id, "title": row.title, "status": row.status, "created": row.created_at})
    t = table(["step", "id", "name", "state", "tries", "result"])
    for s in steps:
        t.add_row(
            str(s.step_index),
            str(s.id),
            s.name,
            styled(s.state),
            str(s.attempts),
            "-" if s.result is None else str(s.result),
        )
    show_table(t, wide)
    if events:
        _print_events(trail, {s.id: f"{s.step_index} {s.name}" for s in steps})
