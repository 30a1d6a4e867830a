"""``taskledger``: run the system, see it work, inspect and operate the ledger.

taskledger up              PostgreSQL + Redis (embedded unless configured), worker, beat
taskledger demo            a goal with a flaky step, followed live
taskledger goals | goal ID | tasks | show ID | peek | stats     (--json on lists)
taskledger cancel ID | requeue ID | resume GOAL
taskledger db upgrade      apply migrations (on external servers)
"""

# Each area is a module cli/<area>.py with its own `typer.Typer()`, registered below in
# one line: `app.add_typer(area.app)` puts its commands at the top level, `name="x"` makes
# them `taskledger x …`. Those modules import only typer, the standard library and
# cli.output at the top; anything heavy (jobs, models, SQLAlchemy, Celery) is imported
# inside the command that needs it, so that `taskledger --help` starts in ~0.15 s. The
# read-only views query through cli/reads.py (plain SQL over psycopg, no SQLAlchemy or
# Celery): ~0.45 s for `taskledger tasks` (tests/unit/test_cli_imports.py guards it).

from __future__ import annotations

import typer

from cli import api, control, cron, db, demo, ledger, lists, mcp, operate, up

HELP = (
    "A durable, auditable job system on Celery, Redis and PostgreSQL. "
    "Start with `taskledger up`, then `taskledger demo` in another terminal."
)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=HELP,
    rich_markup_mode=None,  # plain help: Rich's help formatter alone costs ~0.2 s to import
    pretty_exceptions_enable=False,
)
app.add_typer(up.app)
app.add_typer(demo.app)
app.add_typer(ledger.app)
app.add_typer(operate.app)
app.add_typer(db.app, name="db")
app.add_typer(mcp.app)
app.add_typer(api.app)
app.add_typer(cron.app)  # cron …, side list, sidecar, pulse
app.add_typer(lists.app, name="lists")  # markdown task lists
app.add_typer(control.app)  # approvals, approve, deny, pause, resume, cleanup, sessions


def main() -> None:
    try:
        app()
    except Exception as exc:
        from cli.errors import explain

        message = explain(exc)
        if message is None:
            raise
        from cli.output import console

        console().print(f"[red]error:[/] {message}", soft_wrap=True, markup=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
