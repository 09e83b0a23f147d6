"""channel fallback: patience counts from a delivery's first try; a message that failed on one channel goes
on as a new delivery on the next (fallback_of), to the recipient's address kept with it (contact)

Revision ID: notify_0005
Revises: notify_0004
Create Date: 2026-12-12 10:00:00.000000

"""
import json
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'notify_0005'
down_revision: Union[str, Sequence[str], None] = 'notify_0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_tried_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('fallback_of', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('contact', sa.Text(), nullable=True))
    # messages under way to a ticket's own resident get that resident's addresses, so that they too can fall
    # back (a repeat report's resident, `merged`, is not stored: those stay on their channel); their patience
    # counts from their next try (the old courier kept no first try)
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT d.id, c.email, c.phone FROM deliveries d JOIN contacts c ON c.ticket_id = d.ticket_id "
        "WHERE d.state IN ('pending', 'sending') AND d.template NOT IN ('merged', 'staff_escalated')")).all()
    for delivery_id, email, phone in rows:
        conn.execute(sa.text("UPDATE deliveries SET contact = :contact WHERE id = :id"),
                     {"contact": json.dumps({"email": email, "phone": phone}), "id": delivery_id})


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('contact')
        batch_op.drop_column('fallback_of')
        batch_op.drop_column('first_tried_at')
