"""volunteers and teams as people: registered, edited and deactivated over the API

Revision ID: volunteer_0004
Revises: volunteer_0003
Create Date: 2026-12-02 06:30:00.000000

A volunteer gets a kind (a volunteer of a team, or a neighbour offering help: 亲帮亲/邻帮邻), a phone, party
membership, what a neighbour offers, availability windows (JSON; [] is any time), whether they are active,
who registered them and when they last changed (other instances' indexes re-read what changed since). Teams
get a table of their own: name, leader, village. Existing rows are the demo's seeded volunteers: volunteers,
active, available any time.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = 'volunteer_0004'
down_revision: Union[str, Sequence[str], None] = 'volunteer_0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=10), server_default='volunteer', nullable=False))
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('party_member', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('offers', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('availability', sa.Text(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('registered_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_volunteers_updated_at'), ['updated_at'], unique=False)
    op.create_table('teams',
                    sa.Column('id', sa.String(length=20), nullable=False),
                    sa.Column('name', sa.String(length=50), nullable=False),
                    sa.Column('leader_id', sa.String(length=20), nullable=True),
                    sa.Column('village_code', sa.String(length=12), nullable=False),
                    sa.Column('active', sa.Boolean(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_village_code'), ['village_code'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_teams_village_code'))
    op.drop_table('teams')
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volunteers_updated_at'))
        for column in ('updated_at', 'registered_by', 'active', 'availability', 'offers', 'party_member', 'phone',
                       'kind'):
            batch_op.drop_column(column)
