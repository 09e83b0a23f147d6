"""a need's position in its visit or night talk: raised items are listed in the order they were raised

Revision ID: outreach_0002
Revises: outreach_0001
Create Date: 2026-12-02 10:30:00.000000

Needs recorded before this revision keep position 0: among themselves they stay in id order.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'outreach_0002'
down_revision: Union[str, Sequence[str], None] = 'outreach_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('position', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.drop_column('position')
