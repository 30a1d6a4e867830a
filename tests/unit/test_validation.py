"""Enqueue validation and settings parsing (pure)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from jobs import errors
from jobs.dispatch import broker_priority
from jobs.enqueue import build_spec
from models.settings import NotConfigured, Settings

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def spec(**options):
    return build_spec(
        "t.x", [1], {"a": [1, {"b": None}]}, settings=Settings(), now=NOW, queue="q", **options
    )


def test_defaults_come_from_settings() -> None:
    s = spec()
    assert (s.priority, s.max_retries, s.timeout_s, s.scheduled_for) == (3, 3, 300.0, NOW)


def test_countdown_and_eta_become_scheduled_for() -> None:
    assert spec(countdown=5).scheduled_for == NOW + timedelta(seconds=5)
    eta = NOW + timedelta(hours=1)
    assert spec(eta=eta).scheduled_for == eta
    with pytest.raises(errors.InvalidSchedule, match="not both"):
        spec(countdown=1, eta=eta)


@pytest.mark.parametrize("priority", [True, 1.5, None.__class__])
def test_priority_must_be_an_int(priority) -> None:
    with pytest.raises(errors.InvalidPriority):
        spec(priority=priority)


def test_payload_limit() -> None:
    settings = Settings(max_payload_bytes=100)
    with pytest.raises(errors.PayloadTooLarge, match="100"):
        build_spec("t.x", ["x" * 200], {}, settings=settings, now=NOW, queue="q")


def test_redis_priority_mapping_puts_5_first_and_keeps_0_for_sweeps() -> None:
    assert [broker_priority(p) for p in (5, 4, 3, 2, 1)] == [1, 3, 5, 7, 9]


def test_postgres_urls_use_psycopg3() -> None:
    s = Settings(database_url="postgresql://u@h/db")
    assert s.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgres://u@h/db").resolved_database_url.startswith(
        "postgresql+psycopg://"
    )


def test_no_urls_and_no_running_stack_says_how_to_start_one(tmp_path) -> None:
    s = Settings(
        home=tmp_path, database_url="", broker_url="", lease_seconds=30, heartbeat_seconds=None
    )
    with pytest.raises(NotConfigured, match="taskledger up"):
        s.resolved_database_url  # noqa: B018
    assert s.heartbeat_interval == 10.0


def test_urls_come_from_a_running_stack_in_the_home(tmp_path) -> None:
    (tmp_path / "stack.json").write_text(
        json.dumps(
            {
                "database_url": "postgresql://p@/db",
                "broker_url": "redis+socket:///s",
                "pid": os.getpid(),
            }
        )
    )
    s = Settings(home=tmp_path, database_url="", broker_url="")
    assert s.resolved_database_url == "postgresql+psycopg://p@/db"
    assert s.resolved_broker_url == "redis+socket:///s"


def test_imports_are_comma_separated() -> None:
    assert Settings(imports=" a.b, c ,,").import_modules == ["a.b", "c"]
