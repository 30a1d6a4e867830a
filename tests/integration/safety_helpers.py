"""Shared bits of the agent-safety tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from jobs import policy
from models.db import transaction
from models.settings import reset_settings


@pytest.fixture()
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set TASKLEDGER_* for this process only; settings and policy are re-read."""
    reset_settings()
    policy.reset()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()
    policy.reset()


def use_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(body)
    monkeypatch.setenv("TASKLEDGER_POLICY_FILE", str(path))
    reset_settings()
    policy.reset()
    return path


def tables_containing(value: str) -> list[str]:
    """Every table with a row whose text form contains ``value`` (every column, as text)."""
    found = []
    with transaction() as conn:
        tables = conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ).scalars()
        for table in list(tables):
            hit = conn.execute(
                text(f'SELECT 1 FROM "{table}" t WHERE t::text LIKE :v LIMIT 1'),
                {"v": f"%{value}%"},
            ).first()
            if hit:
                found.append(table)
    return found
