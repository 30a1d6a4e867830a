"""All configuration, read once from ``TASKLEDGER_*`` environment variables.

With nothing set, taskledger runs embedded: SQLite for state and kombu's
serverless ``filesystem://`` transport for messages, both under
``TASKLEDGER_HOME`` (default ``./.taskledger``). Point
``TASKLEDGER_DATABASE_URL`` at PostgreSQL and ``TASKLEDGER_BROKER_URL`` at
Redis for production. README lists every variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKLEDGER_", extra="ignore")

    home: Path = Path(".taskledger")
    database_url: str = ""
    broker_url: str = ""
    imports: str = ""

    # Dispatch window (seed 002: WORKERS_PER_SESSION).
    session_concurrency: int = Field(3, ge=1)
    default_queue: str = "taskledger"
    sweeps_queue: str = "taskledger.sweeps"

    # Retry semantics (seed 000): backoff = base * 2**retries, optional cap and jitter.
    default_max_retries: int = Field(3, ge=0)
    retry_base_seconds: float = Field(1.0, gt=0)
    retry_cap_seconds: float | None = None
    retry_jitter: bool = False

    # Timeouts (seed 002: TASK_TIMEOUT_MS 300000): soft limit, then a hard kill after the grace.
    default_timeout_seconds: float = Field(300.0, gt=0)
    timeout_grace_seconds: float = Field(10.0, ge=0)

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

    worker_concurrency: int = Field(2, ge=1)
    worker_autoscale: str = ""
    log_level: str = "INFO"
    # Benchmark aid: count SQL statements per worker process (bench/ reads them from the broker).
    count_statements: bool = False

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.home / 'taskledger.db'}"
        # psycopg 3 is the driver we ship; accept the plain URL people paste.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def is_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem://")

    @property
    def uses_redis(self) -> bool:
        return self.resolved_broker_url.startswith(("redis://", "rediss://"))

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or max(self.lease_seconds / 3, 0.2)

    @property
    def import_modules(self) -> list[str]:
        return [name.strip() for name in self.imports.split(",") if name.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
