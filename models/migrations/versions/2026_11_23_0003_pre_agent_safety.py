"""Agent safety and control: sessions, policy, approvals, pauses, breakers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    # tasks: owner and the policy decision
    op.add_column('tasks', sa.Column('user_id', sa.String(length=200), nullable=True))
    op.add_column('tasks', sa.Column('policy_decision', JSONB, nullable=True))
    op.create_index(op.f('ix_tasks_user_id_state'), 'tasks', ['user_id', 'state'], unique=False)
    # sessions: owner, pause, labels
    op.add_column('agent_sessions', sa.Column('user_id', sa.String(length=200), nullable=True))
    op.add_column(
        'agent_sessions',
        sa.Column('paused', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    )
    op.add_column(
        'agent_sessions',
        sa.Column('labels', JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.create_index(op.f('ix_agent_sessions_user_id'), 'agent_sessions', ['user_id'], unique=False)
    op.create_table(
        'queue_pauses',
        sa.Column('queue', sa.String(length=200), nullable=False),
        sa.Column('paused_by', sa.String(length=200), nullable=False),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('queue', name=op.f('pk_queue_pauses')),
    )
    op.create_table(
        'circuit_breakers',
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('trial_task_id', sa.Uuid(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('closed', 'open', 'half_open')", name=op.f('ck_circuit_breakers_state')
        ),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_circuit_breakers')),
    )
    op.create_table(
        'agent_pulls',
        sa.Column('agent_id', sa.String(length=300), nullable=False),
        sa.Column('last_pull_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_task_id', sa.Uuid(), nullable=True),
        sa.Column('pulls', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_agent_pulls')),
    )


def downgrade() -> None:
    op.drop_table('agent_pulls')
    op.drop_table('circuit_breakers')
    op.drop_table('queue_pauses')
    op.drop_index(op.f('ix_agent_sessions_user_id'), table_name='agent_sessions')
    op.drop_column('agent_sessions', 'labels')
    op.drop_column('agent_sessions', 'paused')
    op.drop_column('agent_sessions', 'user_id')
    op.drop_index(op.f('ix_tasks_user_id_state'), table_name='tasks')
    op.drop_column('tasks', 'policy_decision')
    op.drop_column('tasks', 'user_id')
