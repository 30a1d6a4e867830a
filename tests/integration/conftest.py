from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from models.db import dispose_engines, transaction
from models.migrate import upgrade
from models.settings import reset_settings
from tests.support import services
from tests.support.services import Cluster


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    services.recreate_database()
    reset_settings()
    dispose_engines()
    upgrade()
    yield services.TEST_ENV["TASKLEDGER_DATABASE_URL"]
    dispose_engines()


@pytest.fixture(scope="session")
def cluster(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    services.flush_redis()
    env = dict(os.environ, PYTHONPATH=str(services.ROOT))
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")), env)
    c.start_sweeps()
    c.start_worker()
    yield c
    c.stop()


@pytest.fixture()
def clean(database: str) -> Iterator[None]:
    """An empty ledger and empty counters for each test."""
    with transaction() as conn:
        conn.execute(text("TRUNCATE task_events, tasks, goals, agent_sessions CASCADE"))
    redis.Redis.from_url(services.COUNTER_URL).flushdb()
    yield


@pytest.fixture()
def counter() -> redis.Redis:
    return redis.Redis.from_url(services.COUNTER_URL)
