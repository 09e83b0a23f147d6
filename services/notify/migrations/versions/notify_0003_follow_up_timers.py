"""follow-up timers: a survey is due follow_up_hours after resolution, reminded, then given up

Revision ID: notify_0003
Revises: notify_0002
Create Date: 2026-12-01 16:20:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'notify_0003'
down_revision: Union[str, Sequence[str], None] = 'notify_0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ticket_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('given_up_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('asked_at', existing_type=sa.DateTime(timezone=True), nullable=True)
        batch_op.create_index(batch_op.f('ix_surveys_due_at'), ['due_at'], unique=False)

    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome_version', sa.Integer(), nullable=True))

    # surveys asked before this revision and still unanswered join the chain: reminded now, then given up
    op.execute("UPDATE surveys SET due_at = asked_at WHERE answered_at IS NULL AND ticket_id NOT IN "
               "(SELECT ticket_id FROM contacts WHERE closed_at IS NOT NULL)")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM surveys WHERE asked_at IS NULL")  # not sent yet: the old schema cannot hold them
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('outcome_version')

    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_surveys_due_at'))
        batch_op.alter_column('asked_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_column('closed_at')
        batch_op.drop_column('given_up_at')
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('due_at')
        batch_op.drop_column('resolved_by')
        batch_op.drop_column('ticket_version')
