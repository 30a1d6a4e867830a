"""``taskledger cron …``, ``side list``, ``sidecar`` and ``pulse``: scheduled work.

Registered from cli/main.py in one line (``app.add_typer(cron.app)``). The read
commands read the schedule tables in plain SQL (``cli/cron_reads.py``); the others
import the user's modules, Django and the Celery app inside the command. JSON
formats (``--json``) are documented in README, "Scheduled work".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from cli.output import JsonOption, console, fail, print_json, short_time, styled

app = typer.Typer()
cron_app = typer.Typer(no_args_is_help=True, help="Cron tasks: list, history, stats, change.")
side_app = typer.Typer(no_args_is_help=True, help="Side tasks: long-running loops.")
app.add_typer(cron_app, name="cron")
app.add_typer(side_app, name="side")

NameArg = Annotated[str, typer.Argument(help="cron task (or built-in entry) name")]


def _load() -> tuple[Any, dict[str, Any]]:
    """Import TASKLEDGER_IMPORTS, validate the definitions, sync them into the schedule."""
    from beat.cron import CronDefinitionError, validate_all
    from workers.app import app as celery_app

    celery_app.loader.import_default_modules()
    try:
        defs = validate_all(extra_names=list(celery_app.conf.beat_schedule))
        from beat import django_schedules

        django_schedules.sync(celery_app.conf.beat_schedule, defs)
    except CronDefinitionError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        if "django_celery_beat" in str(exc):
            raise fail("the schedule tables are missing: run `taskledger db upgrade`") from None
        raise
    return celery_app, defs


def _refused(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from beat.django_schedules import ScheduleError

    try:
        return fn(*args, **kwargs)
    except ScheduleError as exc:
        raise fail(str(exc)) from None


@cron_app.command("list")
def list_crons(as_json: JsonOption = False) -> None:
    """Cron tasks and built-in beat entries, with their schedule and state."""
    from cli import cron_reads
    from cli.reads import reading

    with reading() as conn:
        out = cron_reads.listing(conn)
    if as_json:
        print_json(out)
        return
    if not any(r["kind"] == "cron" for r in out):
        _hint_no_crons()
    from cli.output import table

    t = table(
        ["name", "kind", "schedule", "enabled", "overlap", "last fire", "task"], id_columns=()
    )
    for r in out:
        t.add_row(
            r["name"],
            r["kind"],
            r["schedule"],
            "[green]yes[/]" if r["enabled"] else "[red]no[/]",
            r["overlap"] or "-",
            short_time(r["last_fire_at"]),
            r["task"],
        )
    console().print(t)


def _hint_no_crons() -> None:
    typer.echo(
        "no cron tasks in the schedule yet: beat, `taskledger pulse` and the cron write "
        "commands write them from the modules in TASKLEDGER_IMPORTS",
        err=True,
    )


def _known_cron(conn: Any, name: str | None) -> Any:
    """Every cron task's schedule row (``cron_reads.crons``), once ``name`` is one of them."""
    from cli import cron_reads

    found = cron_reads.crons(conn)
    if name is not None and name not in found:
        raise fail(f"unknown cron task {name!r} (known: {', '.join(found) or 'none'})")
    return found


@cron_app.command()
def history(
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Fires of one cron task, newest first: status, times, duration, result or error."""
    from cli import cron_reads
    from cli.reads import reading

    with reading() as conn:
        _known_cron(conn, name)
        records = cron_reads.history(conn, name, limit=limit)
    if as_json:
        print_json([r.as_json() for r in records])
        return
    from cli.output import table

    t = table(
        ["scheduled", "status", "reason", "duration", "host", "error / result"], id_columns=()
    )
    for r in records:
        outcome = r.error if r.error else ("" if r.result is None else json.dumps(r.result))
        t.add_row(
            short_time(r.scheduled_at),
            styled(r.status),
            r.skipped_reason or "",
            "-" if r.duration_ms is None else f"{r.duration_ms:.0f} ms",
            r.host or "-",
            outcome[:200],
        )
    console().print(t)


@cron_app.command()
def stats(
    name: Annotated[str | None, typer.Argument(help="one cron task")] = None,
    as_json: JsonOption = False,
) -> None:
    """Per cron task: runs, success rate, mean and p95 duration, last run and failure, health."""
    from cli import cron_reads
    from cli.reads import reading

    with reading() as conn:
        found = _known_cron(conn, name)
        out = cron_reads.stats_with_health(conn, found, [name] if name is not None else list(found))
    if as_json:
        print_json(out)
        return
    if not out:
        _hint_no_crons()
    from cli.output import table

    t = table(
        ["name", "runs", "ok %", "mean", "p95", "last run", "fails in a row", "health"],
        id_columns=(),
    )
    for s in out:
        rate = "-" if s["success_rate"] is None else f"{100 * s['success_rate']:.0f}"
        t.add_row(
            s["name"],
            f"{s['runs']} (+{s['skipped']} skipped)",
            rate,
            _ms(s["mean_duration_ms"]),
            _ms(s["p95_duration_ms"]),
            s["last_run_at"] or "-",
            str(s["consecutive_failures"]),
            "[green]ok[/]" if not s["health"] else f"[red]{', '.join(s['health'])}[/]",
        )
    console().print(t)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@cron_app.command()
def enable(name: NameArg) -> None:
    """Enable a cron task or built-in entry; running beats pick it up at their next tick."""
    _load()
    from beat import django_schedules

    _refused(django_schedules.set_enabled, name, True)
    console().print(f"{name} enabled")


@cron_app.command()
def disable(
    name: NameArg,
    yes_disable_sweep: Annotated[
        bool, typer.Option("--yes-disable-sweep", help="confirm disabling a built-in sweep")
    ] = False,
) -> None:
    """Disable a cron task (a built-in sweep needs --yes-disable-sweep)."""
    _load()
    from beat import django_schedules

    _refused(django_schedules.set_enabled, name, False, confirm_builtin=yes_disable_sweep)
    console().print(f"{name} disabled")


@cron_app.command("set")
def set_cron(
    name: NameArg,
    schedule: Annotated[
        str | None, typer.Option(help="'*/5 * * * *' or 'every 10' (seconds)")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="for a cron string")] = None,
    config: Annotated[
        str | None, typer.Option(help="JSON object, checked by config_schema")
    ] = None,
) -> None:
    """Reschedule a cron task or change its config, without a restart."""
    if schedule is None and config is None:
        raise fail("give --schedule and/or --config")
    _load()
    from beat import django_schedules

    parsed: Any = None
    if config is not None:
        try:
            parsed = json.loads(config)
        except ValueError as exc:
            raise fail(f"--config is not JSON: {exc}") from None
    # Validate both before writing either: bad input writes nothing.
    if schedule is not None:
        django_schedules.parse_schedule_text(name, schedule, timezone=timezone or "UTC")
    if parsed is not None:
        from beat.cron import CronDefinitionError, get

        try:
            get(name).check_config(parsed)
        except CronDefinitionError as exc:
            raise fail(str(exc)) from None
    if schedule is not None:
        _refused(django_schedules.set_schedule, name, schedule, timezone=timezone)
    if parsed is not None:
        _refused(django_schedules.set_config, name, parsed)
    row = next(r for r in django_schedules.rows() if r.name == name)
    console().print(f"{name}: {row.schedule}, config {json.dumps(row.config)}")


@cron_app.command()
def run(name: NameArg, as_json: JsonOption = False) -> None:
    """Fire a cron task now, through its overlap and dependency rules."""
    _load()
    from beat.cron import CronDefinitionError
    from beat.pulse import run_now

    try:
        result = _refused(run_now, name)
    except CronDefinitionError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(result.as_json())
        return
    reason = f" ({result.reason})" if result.reason else ""
    task = f" task {result.task_id}" if result.task_id else ""
    console().print(f"{name}: {result.status}{reason}{task}")


@app.command()
def pulse(
    status: Annotated[bool, typer.Option("--status", help="show the last pulse instead")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the cron tasks that are due, once, and exit (serverless; safe to run concurrently)."""
    if status:
        from cli import cron_reads
        from cli.reads import reading

        with reading() as conn:
            data = cron_reads.last_pulse(conn)
        if as_json:
            print_json(data)
            return
        if data is None:
            console().print("no pulse has run yet")
            return
        o = data["outcome"]
        console().print(
            f"last pulse {short_time(data['started_at'])} on {data['host']}: "
            f"ran {len(o['ran'])}, waiting {len(o['waiting'])}, skipped {len(o['skipped'])}, "
            f"already fired {len(o['already_fired'])}"
        )
        return
    _load()
    from beat.pulse import pulse as run_pulse

    report = run_pulse()
    if as_json:
        print_json(report.as_json())
        return
    for what, items in (
        ("ran", report.ran),
        ("waiting", report.waiting),
        ("skipped", report.skipped),
        ("already fired", report.already_fired),
    ):
        for item in items:
            reason = f" ({item['reason']})" if item.get("reason") else ""
            console().print(f"{what:>13}  {item['name']} @ {item['scheduled_at']}{reason}")
    if not (report.ran or report.waiting or report.skipped or report.already_fired):
        console().print("nothing was due")


@side_app.command("list")
def list_side(as_json: JsonOption = False) -> None:
    """Side tasks: defined here, and their state across the cluster."""
    from beat.side import definitions
    from jobs import side_tasks
    from models.db import transaction
    from workers.app import app as celery_app

    celery_app.loader.import_default_modules()
    with transaction() as conn:
        rows = {r.key: dict(r._mapping) for r in side_tasks.states(conn)}
    defs = definitions()
    for name in defs:
        if not any(r["name"] == name for r in rows.values()):
            rows[name] = {"key": name, "name": name, "state": "not started", "holder": None}
    out = [{**r, "defined": r["name"] in defs} for _, r in sorted(rows.items())]
    if as_json:
        print_json(out)
        return
    from cli.output import table

    t = table(["name", "state", "holder", "restarts", "last error"], id_columns=())
    for r in out:
        t.add_row(
            r["key"],
            r["state"],
            r.get("holder") or "-",
            str(r.get("restarts") or 0),
            (r.get("last_error") or "")[:200],
        )
    console().print(t)


@app.command()
def sidecar(
    names: Annotated[list[str] | None, typer.Argument(help="only these side tasks")] = None,
    idle_if_serverless: Annotated[
        bool, typer.Option(hidden=True, help="`taskledger up`: wait quietly when serverless")
    ] = False,
) -> None:
    """Run the side tasks until SIGTERM or Ctrl-C (one instance of each cluster-wide)."""
    import signal
    import threading

    from beat.side import SideTaskError, definitions, run_sidecar
    from workers.app import app as celery_app

    celery_app.loader.import_default_modules()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    from models.settings import get_settings

    if idle_if_serverless and get_settings().serverless:
        console().print("sidecar running nothing: side tasks are off in serverless mode")
        stop.wait()
        return
    chosen = names or sorted(definitions())
    console().print(f"sidecar running {', '.join(chosen) or 'no side tasks'}; Ctrl-C stops it")
    started = datetime.now()
    try:
        run_sidecar(stop, names or None)
    except SideTaskError as exc:
        raise fail(str(exc)) from None
    console().print(f"sidecar stopped after {datetime.now() - started}")
