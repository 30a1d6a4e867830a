"""``taskledger api`` (the HTTP API and monitor alone) and ``taskledger token create``.

Heavy imports (FastAPI, uvicorn, SQLAlchemy) happen inside the commands, so
``taskledger --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cli.services import Service, UpOptions
    from models.settings import Settings

LOCAL_TOKEN_FILE = "api-admin-token"  # in TASKLEDGER_HOME, mode 0600; embedded default only

app = typer.Typer()
token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="the user the token acts as")],
    admin: Annotated[bool, typer.Option("--admin", help="sees every user's work; cleanup")] = False,
    label: Annotated[str | None, typer.Option(help="a note to tell tokens apart")] = None,
) -> None:
    """Create a token; it is printed once, alone on the last line (only its hash is stored)."""
    from api.tokens import create_token
    from models.migrate import upgrade

    upgrade()
    token = create_token(user, admin=admin, label=label)
    typer.echo(f"token for {user}{' (admin)' if admin else ''}; keep it, it is not shown again:")
    typer.echo(token)


@app.command("api")
def api(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: TASKLEDGER_API_HOST]")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="port [default: TASKLEDGER_API_PORT, 8000]"),
    ] = None,
) -> None:
    """Run the HTTP API and the task monitor (/tasks) until Ctrl-C."""
    from api.server import serve
    from models.migrate import upgrade
    from models.settings import get_settings

    settings = get_settings()
    host, port = host or settings.api_host, port or settings.api_port
    upgrade()
    typer.echo(
        f"starting the API on http://{host}:{port} (monitor: /tasks, OpenAPI: /openapi.json)"
    )
    serve(host, port, log_level=get_settings().log_level)


def api_service(settings: Settings, options: UpOptions) -> Service:
    """The API as one of ``taskledger up``'s supervised services (cli/services.py)."""
    from cli.services import Service

    argv = [sys.executable, "-m", "cli.main", "api"]
    argv += ["--host", settings.api_host, "--port", str(settings.api_port)]
    return Service("api", argv, ready="taskledger API serving on", stop_grace_s=5.0)


def monitor_link(settings: Settings) -> str | None:
    """On the embedded default, the monitor's URL with a local admin token (made on first
    start, kept in TASKLEDGER_HOME with mode 0600), so a newcomer gets in with one click.
    Printed to the terminal by ``up``, never to a log. None with external servers."""
    if settings.database_url or settings.broker_url:
        return None
    from api.tokens import create_token, lookup

    path = Path(settings.home) / LOCAL_TOKEN_FILE
    token = path.read_text().strip() if path.exists() else ""
    if not token or lookup(token) is None:
        token = create_token("local", admin=True, label="taskledger up (embedded)")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    return f"http://{host}:{settings.api_port}/tasks?token={token}"
