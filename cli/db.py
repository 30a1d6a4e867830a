"""``taskledger db upgrade``: apply the Alembic migrations to the configured database."""

from __future__ import annotations

import typer

from cli.output import console

app = typer.Typer(no_args_is_help=True, help="Database migrations.")


@app.command("upgrade")
def upgrade() -> None:
    """Apply all migrations (on external servers; `taskledger up` does it by itself)."""
    from models.migrate import upgrade as migrate_upgrade

    migrate_upgrade()
    from beat.django_setup import migrate as migrate_schedules

    migrate_schedules()  # django-celery-beat's tables, next to ours (README "Scheduled work")
    console().print("[green]database is at the latest revision[/]")
