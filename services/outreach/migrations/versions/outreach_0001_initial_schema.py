"""outreach: the household register, household heads, visit plans, visits, night talks, needs found, and
the record of every change and read

Revision ID: outreach_0001
Revises:
Create Date: 2026-12-02 06:36:18.973614

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'outreach_0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('days_opened',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('visits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day')
    )
    op.create_table('heads',
    sa.Column('id', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('party_member', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deactivated_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('heads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_heads_village_code'), ['village_code'], unique=False)

    op.create_table('household_reads',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reader', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('household_id', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('household_reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_reads_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_household_reads_household_id'), ['household_id'], unique=False)

    op.create_table('inbox',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('consumer', sa.String(length=100), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'consumer')
    )
    op.create_table('night_talks',
    sa.Column('id', sa.String(length=20), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('held_on', sa.Date(), nullable=False),
    sa.Column('host', sa.String(length=50), nullable=False),
    sa.Column('attendance', sa.Integer(), nullable=False),
    sa.Column('village_phone', sa.String(length=20), nullable=False),
    sa.Column('village_email', sa.String(length=254), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('night_talks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_night_talks_held_on'), ['held_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_night_talks_village_code'), ['village_code'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('exchange', sa.String(length=100), nullable=False),
    sa.Column('routing_key', sa.String(length=255), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_event_id'), ['event_id'], unique=False)
        batch_op.create_index('ix_outbox_unsent', ['sent_at', 'id'], unique=False)

    op.create_table('register_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('what', sa.String(length=20), nullable=False),
    sa.Column('subject_id', sa.String(length=20), nullable=False),
    sa.Column('change', sa.String(length=20), nullable=False),
    sa.Column('before', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('register_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_register_changes_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_changes_subject_id'), ['subject_id'], unique=False)

    op.create_table('households',
    sa.Column('id', sa.String(length=20), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('grid_code', sa.String(length=20), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('contact_by', sa.String(length=10), nullable=False),
    sa.Column('key_groups', sa.String(length=200), nullable=False),
    sa.Column('grid_worker_id', sa.String(length=40), nullable=False),
    sa.Column('head_id', sa.String(length=20), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forgotten_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['head_id'], ['heads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_households_grid_code'), ['grid_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_households_grid_worker_id'), ['grid_worker_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_households_head_id'), ['head_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_households_village_code'), ['village_code'], unique=False)

    op.create_table('household_members',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('household_id', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('relation', sa.String(length=20), nullable=False),
    sa.Column('born', sa.Integer(), nullable=True),
    sa.Column('key_groups', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_members_household_id'), ['household_id'], unique=False)

    op.create_table('visit_plans',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('household_id', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('every_days', sa.Integer(), nullable=False),
    sa.Column('due_minutes', sa.Integer(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('visit_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visit_plans_household_id'), ['household_id'], unique=False)

    op.create_table('visits',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.String(length=20), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('grid_code', sa.String(length=20), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('responsible_id', sa.String(length=40), nullable=False),
    sa.Column('assigned_to', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('first_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('missed', sa.Boolean(), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_by', sa.String(length=64), nullable=True),
    sa.Column('contact_made', sa.Boolean(), nullable=True),
    sa.Column('on_time', sa.Boolean(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.ForeignKeyConstraint(['plan_id'], ['visit_plans.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'day', name='uq_visit_plan_day')
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_assigned_to'), ['assigned_to'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_day'), ['day'], unique=False)
        batch_op.create_index('ix_visits_due', ['state', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_grid_code'), ['grid_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_household_id'), ['household_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_responsible_id'), ['responsible_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_village_code'), ['village_code'], unique=False)

    op.create_table('needs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('visit_id', sa.String(length=24), nullable=True),
    sa.Column('household_id', sa.String(length=20), nullable=True),
    sa.Column('talk_id', sa.String(length=20), nullable=True),
    sa.Column('category', sa.String(length=10), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('attributes', sa.Text(), nullable=False),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('ticket_no', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], ),
    sa.ForeignKeyConstraint(['talk_id'], ['night_talks.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_needs_household_id'), ['household_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_needs_talk_id'), ['talk_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_needs_ticket_no'), ['ticket_no'], unique=False)
        batch_op.create_index(batch_op.f('ix_needs_visit_id'), ['visit_id'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_needs_visit_id'))
        batch_op.drop_index(batch_op.f('ix_needs_ticket_no'))
        batch_op.drop_index(batch_op.f('ix_needs_talk_id'))
        batch_op.drop_index(batch_op.f('ix_needs_household_id'))

    op.drop_table('needs')
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visits_village_code'))
        batch_op.drop_index(batch_op.f('ix_visits_responsible_id'))
        batch_op.drop_index(batch_op.f('ix_visits_household_id'))
        batch_op.drop_index(batch_op.f('ix_visits_grid_code'))
        batch_op.drop_index('ix_visits_due')
        batch_op.drop_index(batch_op.f('ix_visits_day'))
        batch_op.drop_index(batch_op.f('ix_visits_assigned_to'))

    op.drop_table('visits')
    with op.batch_alter_table('visit_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_plans_household_id'))

    op.drop_table('visit_plans')
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_members_household_id'))

    op.drop_table('household_members')
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_households_village_code'))
        batch_op.drop_index(batch_op.f('ix_households_head_id'))
        batch_op.drop_index(batch_op.f('ix_households_grid_worker_id'))
        batch_op.drop_index(batch_op.f('ix_households_grid_code'))

    op.drop_table('households')
    with op.batch_alter_table('register_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_changes_subject_id'))
        batch_op.drop_index(batch_op.f('ix_register_changes_at'))

    op.drop_table('register_changes')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unsent')
        batch_op.drop_index(batch_op.f('ix_outbox_event_id'))

    op.drop_table('outbox')
    with op.batch_alter_table('night_talks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_night_talks_village_code'))
        batch_op.drop_index(batch_op.f('ix_night_talks_held_on'))

    op.drop_table('night_talks')
    op.drop_table('inbox')
    with op.batch_alter_table('household_reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_reads_household_id'))
        batch_op.drop_index(batch_op.f('ix_household_reads_at'))

    op.drop_table('household_reads')
    with op.batch_alter_table('heads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_heads_village_code'))

    op.drop_table('heads')
    op.drop_table('days_opened')
