"""A child's output, copied line by line into a size-limited, rotated log file.

``taskledger up`` reads each service's stdout through a pipe rather than
handing it a file: then the size limit holds whatever the child logs, and the
pump can notice the line that says the child is ready.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import IO

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 2  # worker.log, worker.log.1, worker.log.2: at most 15 MiB per service


class RotatingLog:
    """Append-only file that moves to ``.1`` (``.1`` to ``.2``…) when it passes ``max_bytes``."""

    def __init__(
        self, path: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.backups:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        with self._lock:
            self._file.close()


class LogPump(threading.Thread):
    """Copies ``stream`` into ``log`` until EOF; sets ``ready`` when ``marker`` shows up."""

    def __init__(self, stream: IO[bytes], log: RotatingLog, marker: bytes | None) -> None:
        super().__init__(daemon=True, name=f"log-pump {log.path.name}")
        self.stream = stream
        self.log = log
        self.marker = marker
        self.ready = threading.Event()
        if marker is None:
            self.ready.set()

    def run(self) -> None:
        with self.stream:
            for line in iter(self.stream.readline, b""):
                self.log.write(line)
                if not self.ready.is_set() and self.marker and self.marker in line:
                    self.ready.set()
