"""The suite's own throwaway PostgreSQL and Redis, from the same wheels as ``taskledger up``.

Started once per test run in a fresh temporary folder, on unix sockets only,
and stopped and deleted at the end. Tests never connect to the machine's own
servers (except ``tests/support/sentinel.py``, which only checks they were
left alone), and fault tests stop, kill or flush only these.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from embedded import EmbeddedPostgres, EmbeddedRedis

TEST_DB = "taskledger_test"


class TestServers:
    def __init__(self) -> None:
        # Short and private: unix socket paths must stay under ~100 characters.
        self.folder = Path(tempfile.mkdtemp(prefix="tl-test-"))
        self.postgres = EmbeddedPostgres(self.folder / "pg")
        self.redis = EmbeddedRedis(self.folder / "redis")
        self.admin_url = ""

    def start(self) -> None:
        self.redis.start()
        self.admin_url = self.postgres.start()
        self.postgres.wait_ready()

    def database_url(self, name: str = TEST_DB) -> str:
        return self.admin_url.replace("/postgres?", f"/{name}?", 1)

    def broker_url(self, db: int = 0) -> str:
        """kombu's URL for a Redis database on the test server."""
        return f"{self.redis.url}?virtual_host={db}"

    def redis_url(self, db: int) -> str:
        """redis-py's URL for a Redis database on the test server."""
        return f"unix://{self.redis.socket}?db={db}"

    def restart_postgres(self, down_for: float = 0.0) -> None:
        import time

        self.postgres.stop(mode="immediate")
        time.sleep(down_for)
        self.postgres.start()
        self.postgres.wait_ready()

    def restart_redis(self) -> None:
        self.redis.stop()
        self.redis.start()

    def stop(self) -> None:
        try:
            self.postgres.stop(mode="immediate")
        finally:
            self.redis.stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    def recreate_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
