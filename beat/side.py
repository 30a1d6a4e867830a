"""Side tasks (seed 003): long-running loops, one instance cluster-wide, by ``taskledger sidecar``.

    from beat import side_task

    @side_task(name="files.watch", restart="on_error", backoff=1.0)
    def watch(abort: threading.Event, ctx: SideContext) -> None:
        while not abort.is_set():
            ...
            abort.wait(1.0)

``abort`` is set on shutdown (SIGTERM) or when the lease is lost. ``restart``:
``on_error`` (default: restart after an exception, with backoff
``backoff * 2**n`` capped at ``backoff_cap``, n = restarts in a row),
``always`` (also when the function returns) or ``never``. ``on_error(exc, ctx)``
and ``on_shutdown(ctx)`` are optional hooks; ``on_shutdown`` gets
``shutdown_timeout`` seconds. ``singleton=True`` (default): a lease in
Postgres lets one sidecar in the cluster run it. Side tasks never start in
serverless mode (``TASKLEDGER_SERVERLESS``). This module imports only the
standard library; the runner's imports load when it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RESTART_MODES = ("on_error", "always", "never")
log = logging.getLogger("taskledger.side")


class SideTaskError(ValueError):
    """A side task definition is invalid, or side tasks cannot run here."""


@dataclass
class SideContext:
    name: str
    holder: str
    restarts: int  # restarts in a row so far (0 on the first run)
    abort: threading.Event
    logger: logging.LoggerAdapter[logging.Logger] = field(init=False)

    def __post_init__(self) -> None:
        self.logger = logging.LoggerAdapter(log, {"side_task": self.name})


@dataclass(frozen=True, kw_only=True)
class SideTaskDefinition:
    name: str
    run: Callable[[threading.Event, SideContext], Any]
    restart: str
    backoff: float
    backoff_cap: float
    singleton: bool
    shutdown_timeout: float
    on_error: Callable[[BaseException, SideContext], Any] | None
    on_shutdown: Callable[[SideContext], Any] | None
    description: str

    def backoff_s(self, restarts: int) -> float:
        return min(self.backoff * 2.0 ** min(max(restarts - 1, 0), 60), self.backoff_cap)


_REGISTRY: dict[str, SideTaskDefinition] = {}


def definitions() -> dict[str, SideTaskDefinition]:
    return dict(_REGISTRY)


def side_task(
    *,
    name: str,
    restart: str = "on_error",
    backoff: float = 1.0,
    backoff_cap: float = 60.0,
    singleton: bool = True,
    shutdown_timeout: float = 10.0,
    on_error: Callable[[BaseException, SideContext], Any] | None = None,
    on_shutdown: Callable[[SideContext], Any] | None = None,
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SideTaskError(f"side task name must be a non-empty string; got {name!r}")
    if restart not in RESTART_MODES:
        raise SideTaskError(f"side task {name!r}: restart must be one of {RESTART_MODES}")
    for what, value in (("backoff", backoff), ("backoff_cap", backoff_cap)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise SideTaskError(f"side task {name!r}: {what} must be > 0 seconds")
    if not isinstance(shutdown_timeout, int | float) or shutdown_timeout <= 0:
        raise SideTaskError(f"side task {name!r}: shutdown_timeout must be > 0 seconds")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        previous = _REGISTRY.get(name)
        if previous is not None and previous.run.__qualname__ != fn.__qualname__:
            raise SideTaskError(f"duplicate side task name {name!r}")
        _REGISTRY[name] = SideTaskDefinition(
            name=name,
            run=fn,
            restart=restart,
            backoff=float(backoff),
            backoff_cap=float(backoff_cap),
            singleton=singleton,
            shutdown_timeout=float(shutdown_timeout),
            on_error=on_error,
            on_shutdown=on_shutdown,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
        )
        return fn

    return register


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Supervisor:
    """Runs one side task in a thread: lease, restarts with backoff, shutdown."""

    def __init__(self, definition: SideTaskDefinition, stop: threading.Event) -> None:
        from models.settings import get_settings

        self.d = definition
        self.stop = stop
        self.holder = holder_id()
        self.key = definition.name if definition.singleton else f"{definition.name}@{self.holder}"
        self.lease_s = get_settings().side_task_lease_seconds
        self.abort = threading.Event()
        self.restarts = 0
        self.thread = threading.Thread(target=self._supervise, name=f"side:{definition.name}")
        self.holding = False

    def _db(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from models import utcnow
        from models.db import transaction

        with transaction() as conn:
            return fn(conn, key=self.key, holder=self.holder, now=utcnow(), **kwargs)

    def _supervise(self) -> None:
        from jobs import side_tasks

        while not self.stop.is_set():
            try:
                self.holding = self._db(side_tasks.acquire, name=self.d.name, lease_s=self.lease_s)
            except Exception:
                log.warning("side task %s: lease check failed", self.d.name, exc_info=True)
                self.holding = False
            if not self.holding:
                self.stop.wait(self.lease_s / 3)  # another sidecar runs it; stand by
                continue
            outcome = self._run_once()
            if outcome == "lost" or self.stop.is_set():
                continue
            again = self.d.restart == "always" or (
                self.d.restart == "on_error" and outcome == "error"
            )
            if not again:
                final = "failed" if outcome == "error" else "stopped"
                self._db(side_tasks.release, state=final)
                self.holding = False
                return
            self.restarts += 1
            self._db(side_tasks.mark, state="restarting", restarted=True)
            if self._wait_renewing(self.d.backoff_s(self.restarts)) == "lost":
                continue
        if self.holding:
            self._db(side_tasks.release, state="stopped")

    def _run_once(self) -> str:
        """Run the function until it ends; "ok", "error" or "lost" (lease taken over)."""
        from jobs import side_tasks

        self.abort.clear()
        ctx = SideContext(self.d.name, self.holder, self.restarts, self.abort)
        self._db(side_tasks.mark, state="running")
        result: dict[str, BaseException | None] = {"error": None}

        def target() -> None:
            try:
                self.d.run(self.abort, ctx)
            except BaseException as exc:  # reported, never lost with the thread
                result["error"] = exc

        worker = threading.Thread(target=target, name=f"side-run:{self.d.name}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self.lease_s / 3)
            if self.stop.is_set():
                self.abort.set()
                self._shutdown(ctx, worker)
                return "ok"
            if worker.is_alive() and not self._db(side_tasks.renew, lease_s=self.lease_s):
                log.warning("side task %s lost its lease; stopping this copy", self.d.name)
                self.abort.set()
                worker.join(self.d.shutdown_timeout)
                self.holding = False
                return "lost"
        error = result["error"]
        if error is None:
            self.restarts = 0
            return "ok"
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        log.warning("side task %s failed: %s", self.d.name, text)
        self._db(side_tasks.mark, state="restarting", error=text)
        if self.d.on_error is not None:
            try:
                self.d.on_error(error, ctx)
            except Exception:
                log.warning("on_error of side task %s raised", self.d.name, exc_info=True)
        return "error"

    def _wait_renewing(self, seconds: float) -> str:
        from jobs import side_tasks

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.stop.is_set():
            self.stop.wait(min(left, self.lease_s / 3))
            if not self._db(side_tasks.renew, lease_s=self.lease_s):
                self.holding = False
                return "lost"
        return "ok"

    def _shutdown(self, ctx: SideContext, worker: threading.Thread) -> None:
        """SIGTERM: abort is set; on_shutdown and the loop get ``shutdown_timeout``."""
        deadline = time.monotonic() + self.d.shutdown_timeout
        if self.d.on_shutdown is not None:
            hook = threading.Thread(target=self._call_on_shutdown, args=(ctx,), daemon=True)
            hook.start()
            hook.join(max(deadline - time.monotonic(), 0))
            if hook.is_alive():
                log.warning("on_shutdown of side task %s overran its deadline", self.d.name)
        worker.join(max(deadline - time.monotonic(), 0))
        if worker.is_alive():
            log.warning("side task %s ignored abort past its deadline", self.d.name)

    def _call_on_shutdown(self, ctx: SideContext) -> None:
        try:
            assert self.d.on_shutdown is not None
            self.d.on_shutdown(ctx)
        except Exception:
            log.warning("on_shutdown of side task %s raised", self.d.name, exc_info=True)


def run_sidecar(stop: threading.Event, names: Sequence[str] | None = None) -> None:
    """Run the side tasks (all, or ``names``) until ``stop`` is set, then shut them down."""
    from models.settings import get_settings

    if get_settings().serverless:
        raise SideTaskError("side tasks do not run in serverless mode (TASKLEDGER_SERVERLESS)")
    defs = definitions()
    unknown = sorted(set(names or ()) - set(defs))
    if unknown:
        raise SideTaskError(f"unknown side task(s) {unknown} (known: {sorted(defs) or 'none'})")
    chosen = [defs[n] for n in (names or sorted(defs))]
    supervisors = [Supervisor(d, stop) for d in chosen]
    if not supervisors:
        stop.wait()  # nothing defined here: stay up (``taskledger up``) until told to stop
    for s in supervisors:
        s.thread.start()
    for s in supervisors:
        s.thread.join()
