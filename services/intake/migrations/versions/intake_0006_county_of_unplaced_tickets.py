"""county of unplaced tickets: a request placed by lat/long alone has a county and no village yet

Revision ID: intake_0006
Revises: intake_0005
Create Date: 2026-11-27 04:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'intake_0006'
down_revision: Union[str, Sequence[str], None] = 'intake_0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('county_code', sa.String(length=6), nullable=True))
    op.execute("UPDATE tickets SET county_code = substr(village_code, 1, 6)")
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.alter_column('county_code', existing_type=sa.String(length=6), nullable=False)
        batch_op.alter_column('village_code', existing_type=sa.String(length=12), nullable=True)
        batch_op.create_index(batch_op.f('ix_tickets_county_code'), ['county_code'], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM tickets WHERE village_code IS NULL")  # no village to go back to
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_county_code'))
        batch_op.alter_column('village_code', existing_type=sa.String(length=12), nullable=False)
        batch_op.drop_column('county_code')
