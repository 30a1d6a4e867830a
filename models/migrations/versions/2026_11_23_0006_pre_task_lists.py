"""Markdown task lists and their executor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

# seed 001's v_active_queue: the items not yet finished, most urgent first, then file order.
ACTIVE_QUEUE_VIEW = """
CREATE VIEW v_active_queue AS
SELECT
    i.id,
    l.path AS task_list_path,
    i.item_id AS task_id,
    i.priority,
    i.section,
    i.title AS description,
    t.state::text AS status,
    t.worker_id AS assigned_agent,
    i.position,
    t.attempts,
    t.created_at AS queued_at,
    l.status::text AS executor_status,
    CAST(substr(i.priority, 2) AS integer) AS priority_order,
    i.dependencies,
    i.task_id AS ledger_task_id,
    l.id AS list_id
FROM task_list_items i
JOIN task_lists l ON l.id = i.list_id
JOIN tasks t ON t.id = i.task_id
WHERE t.state IN ('blocked', 'queued', 'running', 'retry_wait', 'pending_approval')
ORDER BY priority_order ASC, i.position ASC
"""


def upgrade() -> None:
    op.create_table('task_lists',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('goal_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('stopped', 'running', 'paused', name='task_list_status'), nullable=False),
    sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('total_items', sa.Integer(), nullable=False),
    sa.Column('completed_items', sa.Integer(), nullable=False),
    sa.Column('failed_items', sa.Integer(), nullable=False),
    sa.Column('skipped_items', sa.Integer(), nullable=False),
    sa.Column('current_item_id', sa.String(length=200), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stop_deadline', sa.DateTime(timezone=True), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('total_items >= 0 AND completed_items >= 0 AND failed_items >= 0 AND skipped_items >= 0', name=op.f('ck_task_lists_counters')),
    sa.ForeignKeyConstraint(['goal_id'], ['goals.id'], name=op.f('fk_task_lists_goal_id_goals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_lists')),
    sa.UniqueConstraint('path', name=op.f('uq_task_lists_path'))
    )
    op.create_index(op.f('ix_task_lists_goal_id'), 'task_lists', ['goal_id'], unique=False)
    op.create_index(op.f('ix_task_lists_status'), 'task_lists', ['status'], unique=False)
    op.create_table('task_list_items',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('list_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.String(length=200), nullable=False),
    sa.Column('task_id', sa.Uuid(), nullable=True),
    sa.Column('section', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('priority', sa.String(length=2), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('dependencies', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('line', sa.Integer(), nullable=False),
    sa.Column('checked', sa.Boolean(), nullable=False),
    sa.Column('in_file', sa.Boolean(), nullable=False),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("priority IN ('P1', 'P2', 'P3', 'P4')", name=op.f('ck_task_list_items_priority')),
    sa.ForeignKeyConstraint(['list_id'], ['task_lists.id'], name=op.f('fk_task_list_items_list_id_task_lists'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_list_items_task_id_tasks'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_list_items')),
    sa.UniqueConstraint('list_id', 'item_id', name=op.f('uq_task_list_items_list_id_item_id'))
    )
    op.create_index(op.f('ix_task_list_items_task_id'), 'task_list_items', ['task_id'], unique=False)
    op.execute(ACTIVE_QUEUE_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_active_queue")
    op.drop_index(op.f('ix_task_list_items_task_id'), table_name='task_list_items')
    op.drop_table('task_list_items')
    op.drop_index(op.f('ix_task_lists_status'), table_name='task_lists')
    op.drop_index(op.f('ix_task_lists_goal_id'), table_name='task_lists')
    op.drop_table('task_lists')
    sa.Enum(name='task_list_status').drop(op.get_bind(), checkfirst=True)
