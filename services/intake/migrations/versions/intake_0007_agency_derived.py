"""derived, not stored: agency (from the assignee and whether there is a village yet) and status notes

Revision ID: intake_0007
Revises: intake_0006
Create Date: 2026-11-27 05:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'intake_0007'
down_revision: Union[str, Sequence[str], None] = 'intake_0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('agency')
        batch_op.drop_column('status_notes')


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agency', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('status_notes', sa.Text(), nullable=True))
