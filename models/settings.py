"""All configuration, read once from ``TASKLEDGER_*`` environment variables.

With no URLs set, taskledger uses the embedded stack that ``taskledger up``
runs under ``TASKLEDGER_HOME`` (a real PostgreSQL and a real Redis from
their wheels; ``embedded/stack.py``), found through its ``stack.json``. Point
``TASKLEDGER_DATABASE_URL`` at PostgreSQL and ``TASKLEDGER_BROKER_URL`` at
Redis for production. README lists every variable.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "TASKLEDGER_"


class NotConfigured(RuntimeError):
    """No database or broker is configured and no embedded stack is running."""


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("taskledger", appauthor=False))


class Settings(BaseModel):
    """Values given to the constructor win over ``TASKLEDGER_*`` variables (any case), which
    win over the defaults. A plain pydantic model reading ``os.environ`` itself: every field
    is a scalar, and pydantic-settings cost the CLI's read commands ~40 ms of imports."""

    model_config = ConfigDict(extra="ignore", validate_default=True)  # as BaseSettings did

    home: Path = Field(default_factory=default_home)
    database_url: str = ""
    broker_url: str = ""
    imports: str = ""

    # Dispatch window (seed 002: WORKERS_PER_SESSION).
    session_concurrency: int = Field(3, ge=1)
    default_queue: str = "taskledger"
    # Empty: sweeps travel on the default queue at the highest broker priority, so plain
    # `celery worker` + `celery beat` is a complete deployment. Name a queue to give them a
    # dedicated worker (`-Q` that queue) in production.
    sweeps_queue: str = ""
    # Queues durable tasks may be sent to (comma-separated); empty = just default_queue.
    # Anything else is refused at enqueue: no worker would consume it.
    queues: str = ""

    # Retry semantics (seed 000): backoff = base * 2**retries, optional cap and jitter.
    default_max_retries: int = Field(3, ge=0, le=100)
    retry_base_seconds: float = Field(1.0, gt=0)
    retry_cap_seconds: float = Field(3600.0, gt=0)  # base * 2**retries overflows without it
    retry_jitter: bool = False

    # Timeouts (seed 002: TASK_TIMEOUT_MS 300000): soft limit, then a hard kill after the grace.
    default_timeout_seconds: float = Field(300.0, gt=0)
    timeout_grace_seconds: float = Field(10.0, ge=0)
    # Cancelled code that ignores its signal is terminated this long after the cancel.
    cancel_grace_seconds: float = Field(5.0, ge=0)

    # Leases: a running attempt's worker renews it; an expired lease is a lost worker.
    lease_seconds: float = Field(30.0, gt=0)
    heartbeat_seconds: float | None = None

    # Sweeps driven by beat. Seconds, not the seed's 30 s: a retry should start near backoff_until.
    dispatch_interval_seconds: float = Field(1.0, gt=0)
    retry_interval_seconds: float = Field(0.5, gt=0)
    reaper_interval_seconds: float = Field(2.0, gt=0)
    # A queued row whose message was published this long ago and never claimed is published again.
    redispatch_after_seconds: float = Field(30.0, gt=0)
    sweep_batch_size: int = Field(1000, ge=1)

    max_payload_bytes: int = Field(1_048_576, ge=1)
    visibility_timeout_seconds: int = Field(3600, ge=1)

    # Celery task events for Flower. Off by default: they cost about 1 ms of the worker's
    # consumer CPU per task, and Flower switches them on for the workers it watches.
    task_events: bool = False

    # Agent safety (issue 6; README "Agent safety").
    policy_file: str = ""  # TOML rules checked at every enqueue; a bad file is refused at start
    approval_expiry_seconds: float | None = Field(None, gt=0)  # pending longer -> cancelled
    control_interval_seconds: float = Field(5.0, gt=0)  # approval-expiry sweep
    max_unfinished_per_session: int | None = Field(None, ge=1)  # beyond it: QueueFull
    max_unfinished_per_queue: int | None = Field(None, ge=1)
    retention_days: int = Field(30, ge=0)
    retention_batch: int = Field(1000, ge=1)
    retention_timezone: str = "UTC"  # the 03:00 daily cleanup runs in this zone
    breaker_threshold: int = Field(5, ge=1)  # consecutive failures that open a task's breaker
    breaker_cooldown_seconds: float = Field(30.0, gt=0)
    breaker_thresholds: str = ""  # per task: "name=3,other.name=10"
    wait_poll_seconds: float = Field(2.0, gt=0)  # waiting's fallback poll behind LISTEN/NOTIFY

    # Scheduled work (issue 8; README "Scheduled work").
    # A cron slot older than this with no fire is "missed" (health); a late fire records
    # the slots it stood in for within this window as skipped (reason "missed").
    cron_tolerance_seconds: float = Field(60.0, gt=0)
    serverless: bool = False  # no side tasks; cron tasks run by `taskledger pulse`
    side_task_lease_seconds: float = Field(10.0, gt=0)  # one side task instance cluster-wide

    worker_concurrency: int = Field(2, ge=1)
    worker_autoscale: str = ""
    log_level: str = "INFO"
    # The HTTP API and task monitor (`taskledger api`, and `taskledger up` starts it too).
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    # Benchmark aid: count SQL statements per worker process (bench/ reads them from the broker).
    count_statements: bool = False

    # MCP server (`taskledger mcp`): extra tools by task name, how long a plain (non-task)
    # tools/call waits before answering with the task id, and the monitor URL approvals cite.
    mcp_tools: str = ""
    mcp_wait_seconds: float = Field(60.0, gt=0)
    monitor_url: str = ""

    # Flow controls (issue 10; README "Flow controls").
    # A key stays taken this long after its task finished (Stripe keeps keys a day).
    idempotency_window_seconds: float = Field(86400.0, ge=0)
    rate_limits: str = ""  # per task: "name=5/s,other=100/m@session" (wins over the task's own)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        found = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in os.environ.items()
            if key.upper().startswith(ENV_PREFIX)
        }
        return {**{k: v for k, v in found.items() if k in cls.model_fields}, **given}

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or self.embedded_urls()["database_url"]
        # psycopg 3 is the driver we ship; accept the plain URL people paste.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or self.embedded_urls()["broker_url"]

    def embedded_urls(self) -> dict[str, str]:
        """The URLs a running ``taskledger up`` published in its home, or NotConfigured."""
        try:
            stack = json.loads((self.home / "stack.json").read_text())
            os.kill(int(stack["pid"]), 0)
            return {"database_url": stack["database_url"], "broker_url": stack["broker_url"]}
        except (FileNotFoundError, ValueError, KeyError, ProcessLookupError):
            pass
        except PermissionError:
            return {"database_url": stack["database_url"], "broker_url": stack["broker_url"]}
        raise NotConfigured(
            f"no taskledger is running on {self.home}: start one with `taskledger up` "
            "(or set TASKLEDGER_DATABASE_URL and TASKLEDGER_BROKER_URL)"
        )

    @property
    def resolved_sweeps_queue(self) -> str:
        return self.sweeps_queue or self.default_queue

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or max(self.lease_seconds / 3, 0.2)

    @property
    def declared_queues(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()] or [self.default_queue]

    @property
    def import_modules(self) -> list[str]:
        return [name.strip() for name in self.imports.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
