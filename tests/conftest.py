"""Shared set-up. Importing ``tests.support.services`` starts the suite's own throwaway
PostgreSQL and Redis; every process of the run is pointed at them, never at the machine's.

The session fixtures live here, defined once: a fixture imported into a second conftest
is a second fixture, and a second ``cluster`` would start workers that steal the first
one's messages (and a second ``database`` would recreate the schema under them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.sentinel import Sentinel
from tests.support.services import SERVERS, TEST_ENV

if TYPE_CHECKING:
    import httpx
    import redis

    from tests.api.support import Tokens
    from tests.support.services import Cluster

# Before anything of ours is imported: settings and the Celery app read the environment once.
os.environ.update(TEST_ENV)
SENTINEL = Sentinel()


def pytest_sessionstart(session: pytest.Session) -> None:
    SENTINEL.plant()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    lost = SENTINEL.check_and_remove()
    if lost:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nFAILED: the suite touched the machine's own servers: lost " + "; ".join(lost))


def pytest_unconfigure(config: pytest.Config) -> None:
    SERVERS.stop()


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    from models.db import dispose_engines
    from models.migrate import upgrade
    from models.settings import reset_settings
    from tests.support import services

    services.recreate_database()
    reset_settings()
    dispose_engines()
    upgrade()
    yield services.TEST_ENV["TASKLEDGER_DATABASE_URL"]
    dispose_engines()


@pytest.fixture(scope="session")
def cluster(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from tests.support import services

    services.flush_redis()
    env = dict(os.environ, PYTHONPATH=str(services.ROOT))
    c = services.Cluster(Path(tmp_path_factory.mktemp("cluster")), env)
    c.start_sweeps()
    c.start_worker()
    yield c
    c.stop()


@pytest.fixture()
def clean(database: str) -> Iterator[None]:
    """An empty ledger and empty counters for each test."""
    import redis
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from models.db import transaction
    from tests.support import services

    for attempt in range(5):  # a sweep running on the worker may deadlock the TRUNCATE
        try:
            with transaction() as conn:
                conn.execute(
                    text(
                        "TRUNCATE task_events, tasks, goals, agent_sessions, queue_pauses, "
                        "circuit_breakers, agent_pulls, rate_limits, session_budgets CASCADE"
                    )
                )
            break
        except OperationalError:
            if attempt == 4:
                raise
    redis.Redis.from_url(services.COUNTER_URL).flushdb()
    yield


@pytest.fixture()
def counter() -> redis.Redis:
    import redis

    from tests.support import services

    return redis.Redis.from_url(services.COUNTER_URL)


# -- the HTTP API (tests/api, tests/browser) ------------------------------------------------


@pytest.fixture(scope="module")  # per module: its Python policy rule must not outlive it
def api_url(database: str) -> Iterator[str]:
    from tests.api.support import start_api

    yield from start_api(database)


@pytest.fixture(scope="session")
def tokens(database: str) -> Tokens:
    from tests.api.support import make_tokens

    return make_tokens(database)


def _client(api_url: str, token: str | None) -> Iterator[httpx.Client]:
    from tests.api.support import client

    with client(api_url, token) as c:
        yield c


@pytest.fixture()
def alice(api_url: str, tokens: Tokens) -> Iterator[httpx.Client]:
    yield from _client(api_url, tokens.alice)


@pytest.fixture()
def bob(api_url: str, tokens: Tokens) -> Iterator[httpx.Client]:
    yield from _client(api_url, tokens.bob)


@pytest.fixture()
def admin(api_url: str, tokens: Tokens) -> Iterator[httpx.Client]:
    yield from _client(api_url, tokens.admin)


@pytest.fixture()
def anonymous(api_url: str) -> Iterator[httpx.Client]:
    yield from _client(api_url, None)
