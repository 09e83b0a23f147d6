"""early acknowledgements: a resident's acknowledgement that came before its ticket, kept until the case opens

Revision ID: dispatch_0005
Revises: dispatch_0004
Create Date: 2026-12-02 03:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'dispatch_0005'
down_revision: Union[str, Sequence[str], None] = 'dispatch_0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('early_acknowledgements',
                    sa.Column('ticket_id', sa.String(length=32), nullable=False),
                    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('ticket_id'))


def downgrade() -> None:
    op.drop_table('early_acknowledgements')
