"""What routes share: the Celery app (to publish after commit) and a read transaction."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import Connection

from models.db import transaction


@lru_cache(maxsize=1)
def celery_app() -> Any:
    from workers.app import app

    return app


def read_conn() -> Iterator[Connection]:
    with transaction() as conn:
        yield conn


Conn = Annotated[Connection, Depends(read_conn)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[
    str | None,
    Query(max_length=500, pattern=r"^[A-Za-z0-9_-]*$", description="next_cursor of the last page"),
]
Text = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
