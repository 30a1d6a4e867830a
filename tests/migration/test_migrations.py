"""Migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from models import Base, GoalStatus, TaskState, Verification
from models.migrate import downgrade, upgrade
from tests.support.services import SERVERS

DB = "taskledger_migration_test"
SA_URL = SERVERS.database_url(DB).replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture()
def empty_pg():
    SERVERS.recreate_database(DB)
    yield SA_URL
    SERVERS.drop_database(DB)


def test_upgrade_matches_the_models_on_postgres(empty_pg: str) -> None:
    upgrade(empty_pg)
    engine = create_engine(empty_pg)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_pg_enums_match_the_python_enums(empty_pg: str) -> None:
    """If this breaks, a state was added in Python without a migration (or the reverse)."""
    upgrade(empty_pg)
    engine = create_engine(empty_pg)
    with engine.connect() as conn:
        for name, enum in (
            ("task_state", TaskState),
            ("goal_status", GoalStatus),
            ("verification_status", Verification),
        ):
            labels = (
                conn.execute(
                    text(
                        "SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                        "WHERE t.typname = :n ORDER BY e.enumsortorder"
                    ),
                    {"n": name},
                )
                .scalars()
                .all()
            )
            assert labels == [m.value for m in enum]
    engine.dispose()


def test_downgrade_removes_everything_and_upgrade_again(empty_pg: str) -> None:
    upgrade(empty_pg)
    downgrade(empty_pg)
    engine = create_engine(empty_pg)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(empty_pg)
