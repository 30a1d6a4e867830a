"""Errors a user can act on, as one line each; anything else keeps its traceback."""

from __future__ import annotations


def explain(exc: BaseException) -> str | None:
    from jobs.errors import TaskledgerError
    from models.settings import NotConfigured

    if isinstance(exc, NotConfigured | TaskledgerError):
        return str(exc)
    return _unreachable(exc)


def _unreachable(exc: BaseException) -> str | None:
    """A server that is configured but down: say which, not 80 lines of driver stack."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if isinstance(exc, OperationalError):
        first = str(exc.orig or exc).strip().splitlines()[0]
        return f"cannot reach PostgreSQL: {first}"
    if isinstance(exc, ProgrammingError):
        from psycopg.errors import UndefinedColumn, UndefinedTable

        if isinstance(exc.orig, UndefinedTable | UndefinedColumn):
            first = str(exc.orig).strip().splitlines()[0]
            return (
                f"the database is older than this code ({first}): "
                "run `taskledger db upgrade` (`taskledger up` does it when it starts)"
            )
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # pragma: no cover - redis is a dependency
        return None
    if isinstance(exc, RedisConnectionError):
        return f"cannot reach Redis: {exc}"
    return None
