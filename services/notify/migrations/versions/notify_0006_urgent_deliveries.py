"""urgent deliveries: acknowledgements are claimed before every other due delivery

Revision ID: notify_0006
Revises: notify_0005
Create Date: 2026-12-02 03:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'notify_0006'
down_revision: Union[str, Sequence[str], None] = 'notify_0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE deliveries SET urgent = TRUE WHERE template IN ('ack', 'merged') "
               "AND state IN ('pending', 'sending')")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('urgent')
