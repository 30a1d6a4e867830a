"""Side tasks' state and lease in Postgres: one instance cluster-wide, visible to the CLI.

A sidecar runs a singleton side task only while it holds the row's lease
(``holder`` plus an unexpired ``lease_expires_at``), renewed while it runs. A
sidecar that dies stops renewing; once the lease runs out another sidecar
takes it over. Taking and renewing are single conditional statements, so two
sidecars never both believe they hold it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from models import SideTaskState

ERROR_TEXT_LIMIT = 4000


def acquire(
    conn: Connection, *, key: str, name: str, holder: str, lease_s: float, now: datetime
) -> bool:
    """Take (or keep) the lease of ``key``; False while another live holder has it."""
    until = now + timedelta(seconds=lease_s)
    table = SideTaskState.__table__
    insert_stmt = pg_insert(SideTaskState).values(
        key=key,
        name=name,
        state="starting",
        holder=holder,
        lease_expires_at=until,
        started_at=now,
        restarts=0,
        updated_at=now,
    )
    stmt = insert_stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "holder": holder,
            "lease_expires_at": until,
            "state": "starting",
            "updated_at": now,
            "started_at": now,
        },
        where=or_(
            table.c.holder.is_(None),
            table.c.holder == holder,
            table.c.lease_expires_at < now,
        ),
    ).returning(table.c.key)
    return conn.execute(stmt).first() is not None


def renew(conn: Connection, *, key: str, holder: str, lease_s: float, now: datetime) -> bool:
    """Extend our lease; False if it is no longer ours (expired and taken over)."""
    stmt = (
        update(SideTaskState)
        .where(SideTaskState.key == key, SideTaskState.holder == holder)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(SideTaskState.key)
    )
    return conn.execute(stmt).first() is not None


def mark(
    conn: Connection,
    *,
    key: str,
    holder: str,
    state: str,
    now: datetime,
    error: str | None = None,
    restarted: bool = False,
) -> None:
    """Record our side task's state (running, restarting, stopped, failed)."""
    values: dict[str, Any] = {"state": state, "updated_at": now}
    if error is not None:
        values["last_error"] = error[:ERROR_TEXT_LIMIT]
        values["last_error_at"] = now
    if restarted:
        values["restarts"] = SideTaskState.restarts + 1
    conn.execute(
        update(SideTaskState)
        .where(SideTaskState.key == key, SideTaskState.holder == holder)
        .values(values)
    )


def release(conn: Connection, *, key: str, holder: str, state: str, now: datetime) -> None:
    """Give the lease up (clean shutdown): another sidecar may take over at once."""
    conn.execute(
        update(SideTaskState)
        .where(SideTaskState.key == key, SideTaskState.holder == holder)
        .values(holder=None, lease_expires_at=None, state=state, updated_at=now)
    )


def states(conn: Connection) -> list[Any]:
    """Every side task's row, by name (``taskledger side list``)."""
    return list(conn.execute(select(*SideTaskState.__table__.c).order_by(SideTaskState.key)).all())
