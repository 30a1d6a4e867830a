"""Errors a user can act on, as one line each; anything else keeps its traceback.

Each check looks only at libraries already imported: an exception of a module that was
never loaded cannot have been raised, and a read command should not load SQLAlchemy or
Celery just to say the database is down.
"""

from __future__ import annotations

import sys


def explain(exc: BaseException) -> str | None:
    from models.settings import NotConfigured

    if isinstance(exc, NotConfigured):
        return str(exc)
    if "jobs.errors" in sys.modules:
        from jobs.errors import TaskledgerError

        if isinstance(exc, TaskledgerError):
            return str(exc)
    return _unreachable(exc)


def _unreachable(exc: BaseException) -> str | None:
    """A server that is configured but down: say which, not 80 lines of driver stack."""
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError, OperationalError

        if isinstance(exc, DBAPIError):
            return _database(exc.orig or exc, unreachable=isinstance(exc, OperationalError))
    if "psycopg" in sys.modules:
        import psycopg

        if isinstance(exc, psycopg.Error):  # cli.reads talks to psycopg directly
            return _database(exc, unreachable=isinstance(exc, psycopg.OperationalError))
    if "redis" in sys.modules:
        from redis.exceptions import ConnectionError as RedisConnectionError

        if isinstance(exc, RedisConnectionError):
            return f"cannot reach Redis: {exc}"
    return None


def _database(error: BaseException, *, unreachable: bool) -> str | None:
    from psycopg.errors import UndefinedColumn, UndefinedTable

    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, UndefinedTable | UndefinedColumn):
        return (
            f"the database is older than this code ({first}): "
            "run `taskledger db upgrade` (`taskledger up` does it when it starts)"
        )
    return f"cannot reach PostgreSQL: {first}" if unreachable else None
