"""How the CLI prints: one console, state colours, tables that keep ids whole, ``--json``.

Imports only Rich (and only when first used), so every command module can use it
without slowing ``taskledger --help``.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

STATE_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "retry_wait": "yellow",
    "queued": "white",
    "blocked": "dim",
    "in_progress": "cyan",
    "open": "white",
}

# Options shared by every list command.
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
WideOption = Annotated[bool, typer.Option("--wide", help="never shorten any column")]


@lru_cache(maxsize=1)
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def wide_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, width=10_000)


def styled(state: Any) -> str:
    text = str(state)
    style = STATE_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else text


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error; ``raise fail(...)`` to exit with ``code``."""
    console().print(f"[red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_plain, indent=2) + "\n")


def row_dict(row: Any) -> dict[str, Any]:
    """A SQLAlchemy row or a ``cli.reads`` named tuple as a plain dict of SQL column names."""
    mapping = getattr(row, "_mapping", None)
    return dict(mapping) if mapping is not None else row._asdict()


def table(
    columns: Sequence[str], *, id_columns: Iterable[str] = ("id",), free: str | None = None
) -> Table:
    """A table for any terminal width: id columns are never cut, short columns stay on one
    line, and the one free-text column (``free``, else the last) wraps to what is left."""
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False)
    keep = set(id_columns)
    free = free or columns[-1]
    for name in columns:
        if name in keep:
            t.add_column(name, no_wrap=True, min_width=36)
        elif name == free:
            t.add_column(name, overflow="fold", ratio=1)
        else:
            width = 11 if name in ("state", "status") else min(len(name), 9)
            t.add_column(name, no_wrap=True, overflow="ellipsis", min_width=width)
    return t


def show_table(t: Table, wide: bool) -> None:
    (wide_console() if wide else console()).print(t)


def short_time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def fields(values: Mapping[str, Any]) -> None:
    """``name  value`` lines, the names right-aligned."""
    from rich.markup import escape

    width = max(len(k) for k in values)
    for key, value in values.items():
        shown = "-" if value is None else escape(str(value))
        console().print(f"[bold]{key:>{width}}[/]  {shown}", soft_wrap=True)
