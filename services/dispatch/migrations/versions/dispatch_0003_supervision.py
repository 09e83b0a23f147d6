"""supervision: deadlines that act, the escalation ladder, return and transfer, proxy items, call tasks, ledger

Revision ID: dispatch_0003
Revises: dispatch_0002
Create Date: 2026-12-01 16:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'dispatch_0003'
down_revision: Union[str, Sequence[str], None] = 'dispatch_0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TZ = sa.DateTime(timezone=True)
NEW_CASE_COLUMNS = (
    sa.Column('channel', sa.String(length=20), nullable=False, server_default=''),
    sa.Column('vulnerable', sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column('handling', sa.String(length=12), nullable=False, server_default='grid'),
    sa.Column('level', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('supervisor_id', sa.String(length=40), nullable=True),
    sa.Column('supervisor_name', sa.String(length=50), nullable=True),
    sa.Column('resolve_minutes', sa.Integer(), nullable=True),
    sa.Column('filed_at', _TZ, nullable=True),
    sa.Column('decision_due_at', _TZ, nullable=True),
    sa.Column('decision', sa.Text(), nullable=True),
    sa.Column('approved', sa.Boolean(), nullable=True),
    sa.Column('acknowledged_at', _TZ, nullable=True),
    sa.Column('accepted_at', _TZ, nullable=True),
    sa.Column('closed_at', _TZ, nullable=True),
    sa.Column('accepted_on_time', sa.Boolean(), nullable=True),
    sa.Column('resolved_on_time', sa.Boolean(), nullable=True),
    sa.Column('overdue_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('escalation_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('return_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('reassign_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('satisfied', sa.Boolean(), nullable=True),
    sa.Column('closed_how', sa.String(length=20), nullable=True),
    sa.Column('late', sa.Boolean(), nullable=False, server_default=sa.false()),
)


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        for column in NEW_CASE_COLUMNS:
            batch_op.add_column(column)
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data', sa.Text(), nullable=False, server_default='{}'))
    op.create_table(
        'deadlines',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('ticket_id', sa.String(length=32), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.Column('what', sa.String(length=12), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('deadline_at', _TZ, nullable=False),
        sa.Column('due_at', _TZ, nullable=False),
        sa.Column('fired_at', _TZ, nullable=True),
        sa.Column('outcome', sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['cases.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_deadlines_due', 'deadlines', ['fired_at', 'due_at'])
    op.create_index(op.f('ix_deadlines_ticket_id'), 'deadlines', ['ticket_id'])
    op.create_table(
        'tasks',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('ticket_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=12), nullable=False),
        sa.Column('assignee_id', sa.String(length=40), nullable=False),
        sa.Column('assignee_name', sa.String(length=50), nullable=False),
        sa.Column('level', sa.Integer(), nullable=False),
        sa.Column('area_code', sa.String(length=20), nullable=False),
        sa.Column('work_key', sa.String(length=120), nullable=False),
        sa.Column('created_at', _TZ, nullable=False),
        sa.Column('due_at', _TZ, nullable=False),
        sa.Column('done_at', _TZ, nullable=True),
        sa.Column('done_by', sa.String(length=40), nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('overdue', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['cases.id']),
        sa.PrimaryKeyConstraint('id'))
    op.create_index(op.f('ix_tasks_ticket_id'), 'tasks', ['ticket_id'])
    op.create_index(op.f('ix_tasks_assignee_id'), 'tasks', ['assignee_id'])
    op.create_index(op.f('ix_tasks_area_code'), 'tasks', ['area_code'])


def downgrade() -> None:
    op.drop_table('tasks')
    op.drop_table('deadlines')
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.drop_column('data')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        for column in reversed(NEW_CASE_COLUMNS):
            batch_op.drop_column(column.name)
