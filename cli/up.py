"""``taskledger up``: everything a newcomer needs, in the foreground, until Ctrl-C.

With no ``TASKLEDGER_DATABASE_URL``/``TASKLEDGER_BROKER_URL`` it starts a real
PostgreSQL and a real Redis from their wheels under ``TASKLEDGER_HOME``
(``embedded/``) and writes down where they listen (``stack.json``), so every
other command and producer finds them from any directory. With both URLs set
it runs against those servers and starts none. Either way it migrates, then
runs ``cli.services.SERVICES`` (worker, beat, …) and restarts any that crash.
One ``up`` per home: a second one is refused by the home's lock.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from cli.output import console, fail

app = typer.Typer()


class _Stop:
    """Ctrl-C and SIGTERM: during start-up they abort it; afterwards they end the main loop."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.starting = True

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.requested.set()
        if self.starting:
            raise KeyboardInterrupt


def demo_command(home: Path, home_from_env: bool) -> str:
    """The exact command that runs the demo from another terminal, any directory."""
    script = Path(sys.executable).parent / "taskledger"
    command = shlex.quote(str(script)) if script.exists() else "taskledger"
    if home_from_env:
        command = f"TASKLEDGER_HOME={shlex.quote(str(home))} {command}"
    return f"{command} demo"


@app.command()
def up(
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 0,
    autoscale: Annotated[str, typer.Option(help="max,min worker processes, e.g. 8,2")] = "",
    stop_timeout: Annotated[
        float, typer.Option(help="seconds running tasks get to finish on Ctrl-C")
    ] = 10.0,
) -> None:
    """Run PostgreSQL and Redis (embedded unless configured), migrations, worker and beat."""
    from cli.services import SERVICES, ServiceFailed, Supervisor, UpOptions
    from embedded.stack import AlreadyRunning, Stack, take_lock
    from models.settings import get_settings

    stop = _Stop()
    # Both, explicitly: a shell's background job starts with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    settings = get_settings()
    external = bool(settings.database_url or settings.broker_url)
    if external and not (settings.database_url and settings.broker_url):
        raise fail("set both TASKLEDGER_DATABASE_URL and TASKLEDGER_BROKER_URL, or neither")
    out = console()
    out.print(f"taskledger home: {settings.home}", soft_wrap=True)
    try:
        lock = take_lock(settings.home)
    except AlreadyRunning as exc:
        raise fail(str(exc)) from None

    stack: Stack | None = None
    supervisor: Supervisor | None = None
    failed: ServiceFailed | None = None
    env = dict(os.environ, TASKLEDGER_HOME=str(settings.home))
    try:
        began = time.monotonic()
        if external:
            out.print("using the configured PostgreSQL and Redis (no embedded servers)")
        else:
            stack = Stack.at(settings.home)
            stack.start()
            stack.publish(os.getpid())
            env.update(
                TASKLEDGER_DATABASE_URL=stack.database_url, TASKLEDGER_BROKER_URL=stack.broker_url
            )
            out.print(
                f"embedded PostgreSQL and Redis up in {time.monotonic() - began:.1f} s "
                f"(data in {stack.postgres.folder})",
                soft_wrap=True,
            )
        from models.migrate import upgrade

        upgrade()
        options = UpOptions(
            concurrency=concurrency or settings.worker_concurrency,
            autoscale=autoscale or settings.worker_autoscale,
        )
        supervisor = Supervisor(
            [make(settings, options) for make in SERVICES], logs=settings.home / "logs", env=env
        )
        supervisor.start()
        names = ", ".join(m.service.name for m in supervisor.members)
        out.print(
            f"{names} up in {time.monotonic() - began:.1f} s; logs in {supervisor.logs}. "
            "Ctrl-C stops everything.",
            soft_wrap=True,
        )
        out.print("Run the demo from another terminal:", soft_wrap=True)
        out.print(
            f"  {demo_command(settings.home, 'TASKLEDGER_HOME' in os.environ)}",
            soft_wrap=True,
            markup=False,
        )
        from cli.api import monitor_link

        if link := monitor_link(settings):  # embedded default: one click into the monitor
            out.print(f"Task monitor: {link}", soft_wrap=True, markup=False)
        stop.starting = False
        _supervise(supervisor, stop)
    except KeyboardInterrupt:
        out.print("interrupted during start-up")
    except ServiceFailed as exc:
        failed = exc
    finally:
        stop.starting = False
        out.print("stopping...")
        began = time.monotonic()
        try:
            if supervisor is not None:
                supervisor.stop(grace=stop_timeout)
                out.print(f"services stopped in {time.monotonic() - began:.1f} s")
            if stack is not None:
                stack.stop()
        finally:
            lock.close()
        out.print(f"stopped in {time.monotonic() - began:.1f} s")
    if failed is not None:
        out.print(f"[red]error:[/] {failed}", soft_wrap=True)
        for line in failed.tail:
            out.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1)


def _supervise(supervisor: Any, stop: _Stop) -> None:
    """Restart what crashes; on a terminal, a live count of tasks by state."""
    out = console()
    if not out.is_terminal:
        while not stop.requested.wait(0.25):
            for note in supervisor.check():
                out.print(note, soft_wrap=True)
        return
    from rich.live import Live

    last = 0.0
    with Live(_stats_table(), console=out, refresh_per_second=1, transient=True) as live:
        while not stop.requested.wait(0.25):
            for note in supervisor.check():
                live.console.print(note, soft_wrap=True)
            if time.monotonic() - last > 1:
                last = time.monotonic()
                live.update(_stats_table())


def _stats_table() -> Any:
    from rich.table import Table

    from jobs import queries
    from models.db import transaction

    table = Table(title="tasks by state", show_edge=False)
    try:
        with transaction() as conn:
            st = queries.stats(conn)
    except Exception as exc:  # a Postgres blip must not end ``up``; say it and go on
        table.add_column("database")
        table.add_row(f"unreachable: {exc.__class__.__name__}")
        return table
    for state in st.counts:
        table.add_column(state, justify="right")
    table.add_row(*(str(n) for n in st.counts.values()))
    return table
