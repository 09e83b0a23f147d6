"""offers remember the ticket's place and when they expire

Revision ID: volunteer_0002
Revises: volunteer_0001
Create Date: 2026-11-28 09:00:00.000000

An offer now carries the TICKET's village and town (a decline or an expiry asks the next
volunteer near the ticket, not near whoever said no) and, while it is open, `expires_at`.
Existing offers take the place of the volunteer they were made to (the best that is known:
the first match prefers the ticket's own village), and open ones expire 15 minutes (the
default OFFER_MINUTES) after they were made, so they are passed on at the first tick.
"""
from datetime import timedelta
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'volunteer_0002'
down_revision: Union[str, Sequence[str], None] = 'volunteer_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LEGACY_OFFER_MINUTES = 15

offers = sa.table('offers',
                  sa.column('id', sa.Integer()),
                  sa.column('volunteer_id', sa.String(length=20)),
                  sa.column('state', sa.String(length=12)),
                  sa.column('village_code', sa.String(length=12)),
                  sa.column('town_code', sa.String(length=9)),
                  sa.column('created_at', sa.DateTime(timezone=True)),
                  sa.column('expires_at', sa.DateTime(timezone=True)))
volunteers = sa.table('volunteers',
                      sa.column('id', sa.String(length=20)),
                      sa.column('village_code', sa.String(length=12)),
                      sa.column('town_code', sa.String(length=9)))


def _home(column):
    """The offered volunteer's `column` (village_code or town_code), for an UPDATE of offers."""
    return sa.select(column).where(volunteers.c.id == offers.c.volunteer_id).scalar_subquery()


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('village_code', sa.String(length=12), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('town_code', sa.String(length=9), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_offers_due', ['state', 'expires_at'], unique=False)

    bind = op.get_bind()
    bind.execute(offers.update()
                 .where(sa.exists().where(volunteers.c.id == offers.c.volunteer_id))
                 .values(village_code=_home(volunteers.c.village_code), town_code=_home(volunteers.c.town_code)))
    open_offers = bind.execute(sa.select(offers.c.id, offers.c.created_at).where(offers.c.state == 'offered')).all()
    for offer_id, created_at in open_offers:
        bind.execute(offers.update().where(offers.c.id == offer_id)
                     .values(expires_at=created_at + timedelta(minutes=LEGACY_OFFER_MINUTES)))

    with op.batch_alter_table('offers', schema=None) as batch_op:  # the service always writes them
        batch_op.alter_column('village_code', server_default=None)
        batch_op.alter_column('town_code', server_default=None)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index('ix_offers_due')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('town_code')
        batch_op.drop_column('village_code')
