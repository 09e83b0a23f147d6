"""trust boundaries: per-ticket contact, publisher-scoped idempotency, where a ticket is, contact reads refused too

Revision ID: intake_0008
Revises: intake_0007
Create Date: 2026-12-01 14:08:12.047182

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'intake_0008'
down_revision: Union[str, Sequence[str], None] = 'intake_0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _drop_unique_message_id() -> None:
    """The message id was unique on its own (an unnamed constraint); now only per publisher."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table('tickets', naming_convention={
                "uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch_op:
            batch_op.drop_constraint('uq_tickets_message_id', type_='unique')
    else:
        op.drop_constraint('tickets_message_id_key', 'tickets', type_='unique')


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('contact_reads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=20), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('granted', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('refusal', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('area_code', sa.String(length=20), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_contact_reads_area_code'), ['area_code'], unique=False)

    _drop_unique_message_id()
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('publisher', sa.String(length=100), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('contact_name', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('contact_phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('contact_email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('assignee_id', sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column('grid_code', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_tickets_message_id'), ['message_id'], unique=False)
        batch_op.create_unique_constraint('uq_tickets_publisher_message', ['publisher', 'message_id'])

    # tickets made before keep the contact their resident record held then
    op.execute("UPDATE tickets SET contact_name = (SELECT name FROM residents WHERE residents.id = tickets.resident_id), "
               "contact_phone = (SELECT phone FROM residents WHERE residents.id = tickets.resident_id), "
               "contact_email = (SELECT email FROM residents WHERE residents.id = tickets.resident_id)")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_constraint('uq_tickets_publisher_message', type_='unique')
        batch_op.create_unique_constraint('tickets_message_id_key', ['message_id'])
        batch_op.drop_index(batch_op.f('ix_tickets_message_id'))
        batch_op.drop_column('closed_at')
        batch_op.drop_column('grid_code')
        batch_op.drop_column('assignee_id')
        batch_op.drop_column('contact_email')
        batch_op.drop_column('contact_phone')
        batch_op.drop_column('contact_name')
        batch_op.drop_column('publisher')

    with op.batch_alter_table('contact_reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_reads_area_code'))
        batch_op.drop_column('area_code')
        batch_op.drop_column('refusal')
        batch_op.drop_column('granted')
        batch_op.drop_column('role')
