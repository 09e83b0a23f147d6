"""sign-ins: the console's sessions

Revision ID: console_0001
Revises:
Create Date: 2026-12-01 23:50:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = 'console_0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'sign_ins',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('token', sa.Text(), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=30), nullable=False),
        sa.Column('area', sa.String(length=20), nullable=False),
        sa.Column('department', sa.String(length=40), nullable=True),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('signed_in_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_sign_ins_expires_at', 'sign_ins', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_sign_ins_expires_at', table_name='sign_ins')
    op.drop_table('sign_ins')
