"""customer contacts: app_user.customer_id

A user with a customer_id is that customer's contact person (the portal, their own quotes and orders only).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_app_user_customer_id'), ['customer_id'], unique=False)
        batch_op.create_foreign_key('fk_app_user_customer_id_customer', 'customer', ['customer_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_constraint('fk_app_user_customer_id_customer', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_app_user_customer_id'))
        batch_op.drop_column('customer_id')
