"""delivery claims: a courier claims a delivery (state sending, claimed_by, a lease) before sending it

Revision ID: notify_0004
Revises: notify_0003
Create Date: 2026-12-08 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'notify_0004'
down_revision: Union[str, Sequence[str], None] = 'notify_0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answer', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    # a delivery being sent goes back to pending: the old courier sends it again (same message id)
    op.execute("UPDATE deliveries SET state = 'pending' WHERE state = 'sending'")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('answer')
