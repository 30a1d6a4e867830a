"""New task rows and their ``task_created`` events in one statement (``create_tasks``).

One round trip for any number of rows: the rows travel as one JSON document, unpacked
by ``jsonb_to_recordset`` and inserted with their events through a CTE, on the driver
with a prepared plan (the statement's text depends only on which columns are given, so
a ``.delay()`` and a batch of 1,000 reuse the same plan). Values are stored as the ORM
insert stored them: JSON columns through ``json.dumps`` (``None`` is JSON ``null``, as
SQLAlchemy's JSONB writes it), and the columns' Python defaults for what a row leaves out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import JSON

from models import Task
from models.db import execute_on_driver

_TABLE = cast(Table, Task.__table__)
_DIALECT = postgresql.dialect()


def insert_task_rows(conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """Insert ``rows`` (column keys, as ``insert(tasks)`` takes them) and one
    ``task_created`` event each, in one statement."""
    columns = _columns(frozenset(key for row in rows for key in row))
    documents = [_document(row, columns, now, i) for i, row in enumerate(rows)]
    params = {"rows": json.dumps(documents, default=_Plain().convert), "now": now}
    sql = _sql(tuple(c.key for c in columns))
    try:
        execute_on_driver(conn, sql, params)
    except psycopg.IntegrityError as exc:  # callers catch SQLAlchemy's, as from conn.execute
        raise IntegrityError(sql, None, exc) from exc


@dataclass(frozen=True, slots=True)
class _Column:
    key: str
    default: Any  # the column's Python default (SQLAlchemy's ColumnDefault), or None


@lru_cache(maxsize=64)
def _columns(given: frozenset[str]) -> tuple[_Column, ...]:
    """The given columns and those with a Python default (in table order)."""
    unknown = given - set(_TABLE.c.keys())
    if unknown:
        raise ValueError(f"not columns of tasks: {sorted(unknown)}")
    return tuple(
        _Column(c.key, c.default) for c in _TABLE.c if c.key in given or c.default is not None
    )


@lru_cache(maxsize=64)
def _sql(keys: tuple[str, ...]) -> str:
    def value(key: str) -> str:
        # jsonb_to_recordset reads a JSON null as SQL NULL; the ORM stored JSON null.
        if _is_json(_TABLE.c[key].type):
            return f"coalesce(r.\"{key}\", 'null'::jsonb)"
        return f'r."{key}"'

    names = ", ".join(f'"{key}"' for key in keys)
    record = ", ".join(f'"{key}" {_TABLE.c[key].type.compile(dialect=_DIALECT)}' for key in keys)
    values = ", ".join(value(key) for key in keys)
    return f"""
        WITH r AS MATERIALIZED (
            SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
                AS r({record}, _event jsonb, _order int)
        ), new AS (
            INSERT INTO tasks ({names}) SELECT {values} FROM r ORDER BY r._order RETURNING id
        ), event AS (
            INSERT INTO task_events (task_id, goal_id, event_type, payload, created_at)
            SELECT r.id, r.goal_id, 'task_created', r._event, %(now)s
              FROM new JOIN r ON r.id = new.id ORDER BY r._order
        )
        SELECT count(*) FROM new
    """


def _is_json(type_: Any) -> bool:
    return isinstance(type_, JSON)


def _document(
    row: Mapping[str, Any], columns: tuple[_Column, ...], now: datetime, order: int
) -> dict[str, Any]:
    """The row as a JSON object (keys the recordset does not name are ignored)."""
    doc = dict(row)
    for column in columns:
        if column.key not in doc:
            default = column.default
            if default is None:
                continue  # absent: NULL, as the ORM left it
            doc[column.key] = default.arg(None) if default.is_callable else default.arg
    doc["_event"] = created_payload(row, now)
    doc["_order"] = order
    return doc


def created_payload(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    payload = {"state": str(row["state"]), "name": row["name"], "priority": row["priority"]}
    if row.get("session_id"):
        payload["session_id"] = row["session_id"]
    if row["scheduled_for"] > now:
        payload["scheduled_for"] = row["scheduled_for"].isoformat()
    return payload


class _Plain:
    """What the ORM's bind processors did for these types, as JSON (a batch's rows share
    their timestamps: each is converted once)."""

    def __init__(self) -> None:
        self.seen: dict[datetime, str] = {}

    def convert(self, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, datetime):
            text = self.seen.get(value)
            if text is None:
                if value.tzinfo is None:  # models.base.UTCDateTime refuses them too
                    raise ValueError("naive datetime given; taskledger stores aware UTC datetimes")
                text = self.seen[value] = value.astimezone(UTC).isoformat()
            return text
        raise TypeError(f"cannot store a {type(value).__name__} in a task row")
