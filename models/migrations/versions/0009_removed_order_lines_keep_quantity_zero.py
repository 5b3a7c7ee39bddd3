"""removed order lines keep quantity zero

An amendment removes a line by lowering it to 0 (models.orders.amend_order): the line stays, because shipments,
invoices and its reservation demand refer to it. The check written in 0004 (quantity > 0) refused that.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 10:00:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite cannot alter a check: batch mode copies the table with the new one.
    with op.batch_alter_table('sales_order_line', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint('sales_order_line_qty_positive', type_='check')
        batch_op.create_check_constraint('sales_order_line_qty_not_negative', 'quantity >= 0')


def downgrade() -> None:
    # Fails while a removed line (quantity 0) exists: such an order cannot be described by the old schema.
    with op.batch_alter_table('sales_order_line', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint('sales_order_line_qty_not_negative', type_='check')
        batch_op.create_check_constraint('sales_order_line_qty_positive', 'quantity > 0')
