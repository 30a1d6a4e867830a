"""The embedded stack's home folder: where its servers live and how others find them.

Layout under ``TASKLEDGER_HOME``::

    pg/pgdata/       PostgreSQL data and its unix socket
    redis/           Redis socket, pid file and log (no data: Postgres is the truth)
    logs/            worker, beat and api logs (rotated by ``taskledger up``)
    stack.json       the URLs of the running servers and the pid of the ``up`` owning them
    up.lock          held (flock) by the one ``taskledger up`` serving this home

``models.settings`` reads ``stack.json`` when no URL is configured, so a
producer, the CLI or a worker started by hand finds the running servers from
any directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from embedded.postgres import EmbeddedPostgres
from embedded.redis import EmbeddedRedis

STACK_FILE = "stack.json"
LOCK_FILE = "up.lock"


class AlreadyRunning(RuntimeError):
    """Another ``taskledger up`` holds this home."""


@dataclass
class Stack:
    home: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str = ""
    broker_url: str = ""

    @classmethod
    def at(cls, home: Path) -> Stack:
        home = Path(home).resolve()
        return cls(home, EmbeddedPostgres(home / "pg"), EmbeddedRedis(home / "redis"))

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.broker_url = self.redis.start()
        self.database_url = self.postgres.start()
        self.postgres.wait_ready()

    def publish(self, owner_pid: int) -> None:
        """Write stack.json (atomically) so other processes find these servers."""
        tmp = self.home / (STACK_FILE + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "database_url": self.database_url,
                    "broker_url": self.broker_url,
                    "pid": owner_pid,
                }
            )
        )
        tmp.replace(self.home / STACK_FILE)

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.home / STACK_FILE).unlink()
        try:
            self.postgres.stop()
        finally:
            self.redis.stop()


def take_lock(home: Path) -> IO[str]:
    """Hold the home's lock for as long as the returned file stays open.

    A kernel lock, not a pid file: it is released when the holder dies however it dies,
    and a second ``up`` can never delete the first one's claim.
    """
    home.mkdir(parents=True, exist_ok=True)
    handle = open(home / LOCK_FILE, "a+")  # noqa: SIM115 - the caller keeps it open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise AlreadyRunning(
            f"taskledger is already running on {home} (pid {holder}); "
            "stop it with Ctrl-C in its terminal first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
