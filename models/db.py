"""Engines and transactions. One engine per process; a forked child makes its own."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError

from models.settings import get_settings

T = TypeVar("T")
log = logging.getLogger(__name__)
_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}
# Checking each pooled connection before use costs a round trip per transaction. Worker
# processes turn it off: their writes go through with_retry, which survives a dead socket.
_options = {"pre_ping": True}


def set_pre_ping(enabled: bool) -> None:
    _options["pre_ping"] = enabled


def make_engine(url: str) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=_options["pre_ping"],  # a restarted Postgres leaves dead sockets
        pool_size=5,
        max_overflow=5,
        pool_recycle=1800,
    )


def get_engine() -> Engine:
    """The engine for this process and the configured URL (a fork gets a fresh one)."""
    url = get_settings().resolved_database_url
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = make_engine(url)
    return engine


def dispose_engines() -> None:
    """Drop this process's engines without closing a parent's sockets (after fork)."""
    with _lock:
        for (pid, _url), engine in list(_engines.items()):
            engine.dispose(close=pid == os.getpid())
        _engines.clear()


@contextmanager
def transaction() -> Iterator[Connection]:
    """One transaction: commit on success, roll back on any error."""
    with get_engine().begin() as conn:
        yield conn


@contextmanager
def single_statement() -> Iterator[Connection]:
    """For a step that is exactly one statement (the hot path's claim and completion):
    autocommit makes the statement its own transaction, one round trip instead of BEGIN,
    statement, COMMIT."""
    with get_engine().connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


# Benchmark aid (TASKLEDGER_COUNT_STATEMENTS): statements and commits this process sent.
statement_counts = {"statements": 0, "commits": 0, "enabled": 0}


def enable_statement_counting() -> None:
    if statement_counts["enabled"]:
        return
    statement_counts["enabled"] = 1
    event.listen(Engine, "before_cursor_execute", lambda *_: _count("statements"))
    event.listen(Engine, "commit", lambda *_: _count("commits"))


def _count(kind: str) -> None:
    statement_counts[kind] += 1


def execute_on_driver(conn: Connection, sql: str, params: dict[str, Any]) -> Any:
    """Run one statement on the DB-API connection under ``conn`` and return its first row.

    For the hot path only: it skips SQLAlchemy's per-execute work, which was about half
    of a worker's CPU per task. Parameters use the driver's ``%(name)s`` style.
    """
    driver = conn.connection.driver_connection
    assert driver is not None, "execute_on_driver needs a checked-out connection"
    if statement_counts["enabled"]:
        _count("statements")
    return driver.execute(sql, params, prepare=True).fetchone()


def recreate_database(admin_url: str, name: str) -> None:
    """Drop and create a Postgres database (tests and the benchmark start from empty)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def with_retry(
    fn: Callable[[Connection], T],
    *,
    deadline_s: float,
    what: str = "database call",
    one_statement: bool = False,
) -> T:
    """Run ``fn`` in a transaction, retrying while the database is unreachable.

    A Postgres restart must not turn a finished attempt into a lost one: the
    worker keeps trying to record it until ``deadline_s``, then gives up and
    leaves the row to the lease reaper.
    """
    delay = 0.1
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with single_statement() if one_statement else transaction() as conn:
                return fn(conn)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
