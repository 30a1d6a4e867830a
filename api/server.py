"""Running the app under uvicorn, with tokens kept out of the logs.

uvicorn's access log prints each request line, and ``/tasks?token=…`` would put
a bearer token in it; a filter rewrites any ``token=`` value before it is written.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import uvicorn

TOKEN_IN_TEXT = re.compile(r"((?:^|[?&\s])token=)[^&\s\"']+|(Bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    return TOKEN_IN_TEXT.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                redact(a) if isinstance(a, str) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_filter() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", "taskledger.api"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def config(host: str, port: int, *, log_level: str = "info") -> uvicorn.Config:
    from api.app import create_app

    install_log_filter()
    return uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        log_level=log_level.lower(),
        proxy_headers=False,
        timeout_graceful_shutdown=3,
    )


class AnnouncingServer(uvicorn.Server):
    """Prints one line once it accepts connections, whatever the log level: ``taskledger
    up`` waits for that line before it prints the monitor link."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            print(f"{READY_LINE} http://{host}:{port}", flush=True)


READY_LINE = "taskledger API serving on"


def serve(host: str, port: int, *, log_level: str = "info") -> None:
    server = AnnouncingServer(config(host, port, log_level=log_level))
    install_log_filter()  # uvicorn configures its loggers on start; the filter stays
    server.run()


class ThreadedServer:
    """The API in a background thread (``taskledger up`` and the tests)."""

    def __init__(self, host: str, port: int, *, log_level: str = "warning") -> None:
        self.server = uvicorn.Server(config(host, port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, name="taskledger-api", daemon=True)
        self.url = f"http://{host}:{port}"

    def start(self, timeout: float = 30) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.05)
        install_log_filter()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
