"""reach tasks: a person phones a resident no message reached; one task per failed message (tasks.about)

Revision ID: dispatch_0004
Revises: dispatch_0003
Create Date: 2026-12-12 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'dispatch_0004'
down_revision: Union[str, Sequence[str], None] = 'dispatch_0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('about', sa.String(length=80), nullable=True))
        batch_op.create_index('ux_tasks_about', ['kind', 'about'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ux_tasks_about')
        batch_op.drop_column('about')
