"""Acting on tasks and goals: ``cancel``, ``requeue``, ``resume``; one operation call each."""

from __future__ import annotations

import uuid

import typer

from cli.output import console

app = typer.Typer()


@app.command()
def cancel(task_id: uuid.UUID) -> None:
    """Cancel a task; running code gets its cancellation signal."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.cancel_task(celery_app, task_id, reason="cancelled from the CLI")
    console().print(f"task {task_id} cancelled")


@app.command()
def requeue(task_id: uuid.UUID) -> None:
    """Put a failed task back in the queue with a fresh retry budget."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.requeue(celery_app, task_id)
    console().print(f"task {task_id} queued again")


@app.command()
def resume(goal_id: uuid.UUID) -> None:
    """Resume a goal from its first incomplete step (no replay)."""
    from jobs import operations
    from workers.app import app as celery_app

    operations.resume_goal(celery_app, goal_id)
    console().print(f"goal {goal_id} resumed")
