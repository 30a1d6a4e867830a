"""Goals, tasks, task events and agent sessions (seeds 000, 002, 004).

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 10:11:37.438448
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('agent_sessions',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('concurrency IS NULL OR concurrency >= 1', name=op.f('ck_agent_sessions_window')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_sessions'))
    )
    op.create_table('goals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.Enum('open', 'in_progress', 'completed', 'failed', 'cancelled', name='goal_status'), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_goals'))
    )
    op.create_index(op.f('ix_goals_user_id_status_created_at'), 'goals', ['user_id', 'status', 'created_at'], unique=False)
    op.create_table('tasks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('goal_id', sa.Uuid(), nullable=True),
    sa.Column('step_index', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.String(length=200), nullable=True),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('kwargs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.Enum('pending_approval', 'blocked', 'queued', 'running', 'retry_wait', 'completed', 'failed', 'cancelled', 'skipped', name='task_state'), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('backoff_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('timeout_s', sa.Float(), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatch_count', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.String(length=300), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_outcome', sa.String(length=40), nullable=True),
    sa.Column('verification_status', sa.Enum('unverified', 'verified', 'failed', name='verification_status'), nullable=False),
    sa.Column('metadata', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('priority BETWEEN 1 AND 5', name=op.f('ck_tasks_priority')),
    sa.CheckConstraint('retries >= 0 AND max_retries >= 0 AND attempts >= 0', name=op.f('ck_tasks_counters')),
    sa.ForeignKeyConstraint(['goal_id'], ['goals.id'], name=op.f('fk_tasks_goal_id_goals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    op.create_index('ix_tasks_due_retry', 'tasks', ['backoff_until'], unique=False, postgresql_where=sa.text("state = 'retry_wait'"))
    op.create_index(op.f('ix_tasks_finished_at_state'), 'tasks', ['finished_at', 'state'], unique=False)
    op.create_index(op.f('ix_tasks_goal_id_step_index'), 'tasks', ['goal_id', 'step_index'], unique=True)
    op.create_index('ix_tasks_queued_dispatch', 'tasks', ['session_id', 'scheduled_for'], unique=False, postgresql_where=sa.text("state = 'queued'"))
    op.create_index('ix_tasks_running_lease', 'tasks', ['lease_expires_at'], unique=False, postgresql_where=sa.text("state = 'running'"))
    op.create_index(op.f('ix_tasks_session_id_state'), 'tasks', ['session_id', 'state'], unique=False)
    op.create_index(op.f('ix_tasks_state_priority_created_at'), 'tasks', ['state', sa.literal_column('priority DESC'), 'created_at'], unique=False)
    op.create_index(op.f('ix_tasks_worker_id'), 'tasks', ['worker_id'], unique=False)
    op.create_table('task_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('task_id', sa.Uuid(), nullable=True),
    sa.Column('goal_id', sa.Uuid(), nullable=True),
    sa.Column('event_type', sa.String(length=50), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['goal_id'], ['goals.id'], name=op.f('fk_task_events_goal_id_goals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_events_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_events'))
    )
    op.create_index(op.f('ix_task_events_event_type_id'), 'task_events', ['event_type', 'id'], unique=False)
    op.create_index(op.f('ix_task_events_goal_id_id'), 'task_events', ['goal_id', 'id'], unique=False)
    op.create_index(op.f('ix_task_events_task_id_id'), 'task_events', ['task_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_task_events_task_id_id'), table_name='task_events')
    op.drop_index(op.f('ix_task_events_goal_id_id'), table_name='task_events')
    op.drop_index(op.f('ix_task_events_event_type_id'), table_name='task_events')
    op.drop_table('task_events')
    op.drop_index(op.f('ix_tasks_worker_id'), table_name='tasks')
    op.drop_index(op.f('ix_tasks_state_priority_created_at'), table_name='tasks')
    op.drop_index(op.f('ix_tasks_session_id_state'), table_name='tasks')
    op.drop_index('ix_tasks_running_lease', table_name='tasks', postgresql_where=sa.text("state = 'running'"))
    op.drop_index('ix_tasks_queued_dispatch', table_name='tasks', postgresql_where=sa.text("state = 'queued'"))
    op.drop_index(op.f('ix_tasks_goal_id_step_index'), table_name='tasks')
    op.drop_index(op.f('ix_tasks_finished_at_state'), table_name='tasks')
    op.drop_index('ix_tasks_due_retry', table_name='tasks', postgresql_where=sa.text("state = 'retry_wait'"))
    op.drop_table('tasks')
    op.drop_index(op.f('ix_goals_user_id_status_created_at'), table_name='goals')
    op.drop_table('goals')
    op.drop_table('agent_sessions')
    for enum_name in ('task_state', 'goal_status', 'verification_status'):
        sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
