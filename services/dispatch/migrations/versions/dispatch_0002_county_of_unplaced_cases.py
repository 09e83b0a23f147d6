"""county of unplaced cases: a request with a map point and no village waits at its county's centre

Revision ID: dispatch_0002
Revises: dispatch_0001
Create Date: 2026-11-27 04:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'dispatch_0002'
down_revision: Union[str, Sequence[str], None] = 'dispatch_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('county_code', sa.String(length=6), nullable=True))
    op.execute("UPDATE cases SET county_code = substr(village_code, 1, 6)")
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.alter_column('county_code', existing_type=sa.String(length=6), nullable=False)
        batch_op.alter_column('village_code', existing_type=sa.String(length=12), nullable=True)
        batch_op.create_index(batch_op.f('ix_cases_county_code'), ['county_code'], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM history WHERE ticket_id IN (SELECT id FROM cases WHERE village_code IS NULL)")
    op.execute("DELETE FROM cases WHERE village_code IS NULL")  # no village to go back to
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_county_code'))
        batch_op.alter_column('village_code', existing_type=sa.String(length=12), nullable=False)
        batch_op.drop_column('county_code')
