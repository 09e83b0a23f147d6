"""resident withdrawals: signed gateway calls (replays), every withdrawal attempt, when one was asked

Revision ID: intake_0009
Revises: intake_0008
Create Date: 2026-12-08 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'intake_0009'
down_revision: Union[str, Sequence[str], None] = 'intake_0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('gateway_calls',
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('gateway', sa.String(length=40), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('signature')
    )
    with op.batch_alter_table('gateway_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gateway_calls_at'), ['at'], unique=False)

    op.create_table('cancel_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('gateway', sa.String(length=40), nullable=False),
    sa.Column('ticket_id', sa.String(length=40), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('remote', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cancel_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cancel_attempts_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('cancel_requested_at')

    with op.batch_alter_table('cancel_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cancel_attempts_ticket_id'))
    op.drop_table('cancel_attempts')

    with op.batch_alter_table('gateway_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gateway_calls_at'))
    op.drop_table('gateway_calls')
