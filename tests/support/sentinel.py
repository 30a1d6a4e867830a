"""Proof that the suite leaves the machine's own Redis and PostgreSQL alone.

Before the run, a sentinel key goes into the Redis on 127.0.0.1:6379 and a
sentinel database into the PostgreSQL on 127.0.0.1:5432 (each only if that
server is there). After the run both must still exist; then they are removed.
Nothing else ever connects to those servers: no flush, no restart.
"""

from __future__ import annotations

import uuid

import psycopg
import redis

HOST_REDIS = "redis://127.0.0.1:6379/0"
HOST_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Sentinel:
    def __init__(self) -> None:
        token = uuid.uuid4().hex[:12]
        self.key = f"taskledger-test-sentinel:{token}"
        self.database = f"taskledger_sentinel_{token}"
        self.redis_planted = False
        self.pg_planted = False

    def plant(self) -> None:
        try:
            redis.Redis.from_url(HOST_REDIS, socket_connect_timeout=1).set(self.key, "alive")
            self.redis_planted = True
        except redis.RedisError:
            pass  # no Redis on this machine: nothing to protect
        try:
            with psycopg.connect(HOST_PG, autocommit=True, connect_timeout=2) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
            self.pg_planted = True
        except psycopg.Error:
            pass

    def check_and_remove(self) -> list[str]:
        """What was lost (empty when both survived); removes the sentinels either way."""
        lost = []
        if self.redis_planted:
            try:
                client = redis.Redis.from_url(HOST_REDIS, socket_connect_timeout=1)
                if client.get(self.key) != b"alive":
                    lost.append(f"the sentinel key {self.key} in the machine's Redis")
                client.delete(self.key)
            except redis.RedisError as exc:
                lost.append(f"the machine's Redis ({exc})")
        if self.pg_planted:
            try:
                with psycopg.connect(HOST_PG, autocommit=True, connect_timeout=2) as conn:
                    found = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if found is None:
                        lost.append(f"the sentinel database {self.database} in the machine's PG")
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            except psycopg.Error as exc:
                lost.append(f"the machine's PostgreSQL ({exc})")
        return lost
