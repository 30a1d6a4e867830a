"""Scheduled work: cron runs, side-task leases, pulse.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'cron_runs',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('scheduled_at', TS, nullable=False),
        sa.Column('trigger', sa.String(length=20), nullable=False),
        sa.Column('fired_by', sa.String(length=300), nullable=False),
        sa.Column('fired_at', TS, nullable=False),
        sa.Column('task_id', sa.Uuid(), nullable=True),
        sa.Column('skipped_reason', sa.String(length=60), nullable=True),
        sa.Column('config', JSONB, nullable=False),
        sa.ForeignKeyConstraint(
            ['task_id'], ['tasks.id'], name='fk_cron_runs_task_id_tasks', ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name='pk_cron_runs'),
        sa.UniqueConstraint('task_id', name='uq_cron_runs_task_id'),
    )
    op.create_index('uq_cron_runs_run_key', 'cron_runs', ['name', 'scheduled_at'], unique=True)
    op.create_table(
        'cron_pulses',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('host', sa.String(length=300), nullable=False),
        sa.Column('started_at', TS, nullable=False),
        sa.Column('finished_at', TS, nullable=False),
        sa.Column('outcome', JSONB, nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_cron_pulses'),
    )
    op.create_table(
        'side_tasks',
        sa.Column('key', sa.String(length=300), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('holder', sa.String(length=300), nullable=True),
        sa.Column('lease_expires_at', TS, nullable=True),
        sa.Column('started_at', TS, nullable=True),
        sa.Column('restarts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', TS, nullable=True),
        sa.Column('updated_at', TS, nullable=False),
        sa.PrimaryKeyConstraint('key', name='pk_side_tasks'),
    )


def downgrade() -> None:
    op.drop_table('side_tasks')
    op.drop_table('cron_pulses')
    op.drop_index('uq_cron_runs_run_key', table_name='cron_runs')
    op.drop_table('cron_runs')
    # django-celery-beat's tables (taskledger db upgrade creates them next to ours)
    for table in (
        'django_celery_beat_periodictask',
        'django_celery_beat_periodictasks',
        'django_celery_beat_crontabschedule',
        'django_celery_beat_intervalschedule',
        'django_celery_beat_solarschedule',
        'django_celery_beat_clockedschedule',
        'django_migrations',
        'django_content_type',
    ):
        op.execute(f'DROP TABLE IF EXISTS {table} CASCADE')
