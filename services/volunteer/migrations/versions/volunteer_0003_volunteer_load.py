"""volunteers carry their load in the database

Revision ID: volunteer_0003
Revises: volunteer_0002
Create Date: 2026-11-29 09:00:00.000000

Until now each instance counted a volunteer's open offers in memory, so two instances (or two
workers of one, on PostgreSQL) could both give the last place to different tickets. `load` is
now the count every instance decides on, inside the transaction that makes or ends an offer.
It starts as what the offers say: the offers still `offered` or `accepted` per volunteer. The
town gets an index: before saying nobody is free, the service re-reads the loads of the town.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'volunteer_0003'
down_revision: Union[str, Sequence[str], None] = 'volunteer_0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OPEN_STATES = ('offered', 'accepted')  # offers that hold a place (services/volunteer/models.py)

offers = sa.table('offers',
                  sa.column('volunteer_id', sa.String(length=20)),
                  sa.column('state', sa.String(length=12)))
volunteers = sa.table('volunteers',
                      sa.column('id', sa.String(length=20)),
                      sa.column('load', sa.Integer()))


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('load', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_volunteers_town_code'), ['town_code'], unique=False)

    open_offers = (sa.select(sa.func.count()).select_from(offers)
                   .where(offers.c.volunteer_id == volunteers.c.id, offers.c.state.in_(OPEN_STATES))
                   .scalar_subquery())
    op.get_bind().execute(volunteers.update()
                          .where(sa.exists().where(offers.c.volunteer_id == volunteers.c.id,
                                                   offers.c.state.in_(OPEN_STATES)))
                          .values(load=open_offers))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volunteers_town_code'))
        batch_op.drop_column('load')
