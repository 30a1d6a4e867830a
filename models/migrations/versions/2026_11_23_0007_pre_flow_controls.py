"""Flow controls: idempotency keys, rate limits, debounce, budgets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('tasks', sa.Column('idempotency_key', sa.String(length=200), nullable=True))
    op.add_column('tasks', sa.Column('rate_key', sa.String(length=400), nullable=True))
    op.add_column('tasks', sa.Column('debounce_key', sa.String(length=400), nullable=True))
    op.create_index(
        'uq_tasks_idempotency_key',
        'tasks',
        ['idempotency_key'],
        unique=True,
        postgresql_where=sa.text('idempotency_key IS NOT NULL'),
    )
    op.create_index(
        'ix_tasks_queued_rate_key',
        'tasks',
        ['rate_key'],
        unique=False,
        postgresql_where=sa.text("state = 'queued' AND rate_key IS NOT NULL"),
    )
    op.create_index(
        'ix_tasks_queued_debounce_key',
        'tasks',
        ['debounce_key'],
        unique=False,
        postgresql_where=sa.text("state = 'queued' AND debounce_key IS NOT NULL"),
    )
    op.create_table(
        'rate_limits',
        sa.Column('key', sa.String(length=400), nullable=False),
        sa.Column('max_starts', sa.Integer(), nullable=False),
        sa.Column('period_s', sa.Float(), nullable=False),
        sa.Column(
            'starts',
            postgresql.ARRAY(sa.DateTime(timezone=True)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('max_starts >= 1 AND period_s > 0', name=op.f('ck_rate_limits_limit')),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limits')),
    )
    op.create_table(
        'session_budgets',
        sa.Column('session_id', sa.String(length=200), nullable=False),
        sa.Column('max_tokens', sa.BigInteger(), nullable=True),
        sa.Column('max_cost', sa.Float(), nullable=True),
        sa.Column('max_tasks', sa.Integer(), nullable=True),
        sa.Column(
            'on_exceed', sa.String(length=20), server_default=sa.text("'approval'"), nullable=False
        ),
        sa.Column('tokens_used', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('cost_used', sa.Float(), server_default=sa.text('0'), nullable=False),
        sa.Column('tasks_used', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "on_exceed IN ('approval', 'block')", name=op.f('ck_session_budgets_on_exceed')
        ),
        sa.CheckConstraint(
            '(max_tokens IS NULL OR max_tokens >= 0) AND (max_cost IS NULL OR max_cost >= 0) '
            'AND (max_tasks IS NULL OR max_tasks >= 0)',
            name=op.f('ck_session_budgets_limits'),
        ),
        sa.PrimaryKeyConstraint('session_id', name=op.f('pk_session_budgets')),
    )


def downgrade() -> None:
    op.drop_table('session_budgets')
    op.drop_table('rate_limits')
    op.drop_index('ix_tasks_queued_debounce_key', table_name='tasks')
    op.drop_index('ix_tasks_queued_rate_key', table_name='tasks')
    op.drop_index('uq_tasks_idempotency_key', table_name='tasks')
    op.drop_column('tasks', 'debounce_key')
    op.drop_column('tasks', 'rate_key')
    op.drop_column('tasks', 'idempotency_key')
