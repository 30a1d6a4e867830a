"""``taskledger demo``: a three-step goal whose middle step fails twice, followed live.

It runs against whatever ``taskledger up`` serves (found through the home
folder) or the configured servers; it starts nothing itself.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import typer

from cli.output import console, styled, table

app = typer.Typer()

FINAL_GOAL_STATES = ("completed", "failed", "cancelled")


@app.command()
def demo(
    topic: Annotated[str, typer.Option(help="what the demo agent researches")] = "durable queues",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the goal")] = 120,
) -> None:
    """Run a three-step goal whose middle step fails twice, and follow it live."""
    from jobs import operations
    from models.settings import get_settings
    from workers.app import app as celery_app

    settings = get_settings()
    where = "servers" if settings.database_url else f"the embedded stack in {settings.home}"
    settings.resolved_database_url  # noqa: B018 - NotConfigured now, before anything is written
    console().print(f"[bold]taskledger demo[/] on {where}")
    steps: list[operations.StepCall] = [
        ("demo.plan", (topic,), {}, {}),
        ("demo.fetch", ("docs",), {"fail_times": 2}, {"max_retries": 3}),
        ("demo.summarise", (topic,), {}, {"metadata": {"expected_output": "a summary"}}),
    ]
    goal_id = operations.create_goal(
        celery_app, title=f"research {topic}", user_id="demo", steps=steps
    )
    console().print(f"goal [bold]{goal_id}[/] created with {len(steps)} steps")
    status = _follow_goal(goal_id, timeout)
    if status not in FINAL_GOAL_STATES:
        console().print(
            f"the goal is still {status} after {timeout:.0f} s: is `taskledger up` running?"
        )
    console().print(f"details: taskledger goal {goal_id} --events")
    raise typer.Exit(0 if status == "completed" else 1)


def _follow_goal(goal_id: uuid.UUID, timeout: float) -> str:
    from jobs import queries
    from models.db import transaction

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    status = "open"
    steps: list[Any] = []
    with console().status("waiting for the goal...") as spinner:
        while time.monotonic() < deadline:
            with transaction() as conn:
                status = str(queries.get_goal(conn, goal_id).status)
                events = list(reversed(queries.goal_events(conn, goal_id, limit=1000)))
                steps = queries.list_by_goal(conn, goal_id)
            for event in events:
                if event.id not in seen:
                    seen.add(event.id)
                    console().print(_event_line(event, steps), soft_wrap=True, markup=False)
            done = sum(str(s.state) in ("completed", "skipped") for s in steps)
            spinner.update(f"{done}/{len(steps)} steps done, goal {status}")
            if status in FINAL_GOAL_STATES:
                break
            time.sleep(0.2)
    t = table(["step", "task", "state", "tries", "verification", "result"], id_columns=())
    for s in steps:
        t.add_row(
            str(s.step_index),
            s.name,
            styled(s.state),
            str(s.attempts),
            str(s.verification_status),
            str(s.result),
        )
    console().print(t)
    console().print(f"goal {goal_id}: {styled(status)}")
    return status


def _event_line(event: Any, steps: list[Any]) -> str:
    names = {s.id: f"step {s.step_index} {s.name}" for s in steps}
    who = names.get(event.task_id, "goal") if event.task_id else "goal"
    detail = ", ".join(f"{k}={v}" for k, v in event.payload.items() if k != "name")
    return f"{event.created_at:%H:%M:%S.%f}"[:-3] + f"  {who:<24} {event.event_type:<26} {detail}"
