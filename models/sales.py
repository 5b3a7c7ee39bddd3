"""Quotes, sales orders, shipments, customer invoices and payments (quote to cash).

A quote and the order it becomes are one row (`sales_order`), as in Odoo: the status moves from draft through
approval and acceptance to confirmed, delivered and done. The QuoteToCash workflow owns the process; these rows
reflect it, written by idempotent activities (activities/sales.py) keyed by quote number, line, shipment and
invoice keys. Lists and pages read these tables; the workflow's Query serves the timeline.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.common import MONEY, PERCENT, QTY, UNIT_COST, BackorderPreference, utcnow


class NumberSequence(SQLModel, table=True):
    """Business numbers (Q-000123, INV-000045, PAY-...) handed out in a transaction: no gaps are promised,
    no duplicates are possible (the row is updated under the write lock)."""

    __tablename__ = "number_sequence"
    name: str = Field(primary_key=True, max_length=20)
    prefix: str = Field(max_length=10)
    next_value: int = Field(default=1)


class SalesOrder(SQLModel, table=True):
    __tablename__ = "sales_order"
    __table_args__ = (
        # An external channel's reference is unique per customer: a repeated post is refused, not doubled.
        UniqueConstraint("customer_id", "customer_ref", name="sales_order_customer_ref_unique"),
        Index("ix_sales_order_status_created", "status", "created_at"),
        Index("ix_sales_order_customer_status", "customer_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20, unique=True)  # Q-000123: the quote keeps its number as an order
    customer_id: int = Field(foreign_key="customer.id")
    customer_ref: str | None = Field(default=None, max_length=60)
    channel: str = Field(default="web", max_length=20)  # web, api, edi, ecommerce
    status: str = Field(default="draft", max_length=20)  # workflows.contracts.OrderStatus value
    rep: str = Field(max_length=60, index=True)  # username of the sales rep (approval requester)
    branch_id: int | None = Field(default=None, foreign_key="branch.id")
    warehouse_id: int = Field(foreign_key="warehouse.id")
    pricelist_id: int | None = Field(default=None, foreign_key="pricelist.id")
    payment_term_days: int = 30
    quote_date: date
    valid_until: date
    order_discount_percent: Decimal = Field(default=Decimal(0), **PERCENT)
    backorder_preference: BackorderPreference = BackorderPreference.ship_available
    # Totals after line and order discounts; list_total is what the lines would cost at list price.
    list_total: Decimal = Field(default=Decimal(0), **MONEY)
    amount_untaxed: Decimal = Field(default=Decimal(0), **MONEY)
    amount_tax: Decimal = Field(default=Decimal(0), **MONEY)
    amount_total: Decimal = Field(default=Decimal(0), **MONEY)
    cost_total: Decimal = Field(default=Decimal(0), **MONEY)
    discount_percent: Decimal = Field(default=Decimal(0), **PERCENT)  # effective, against list prices
    # What the customer's pricelist grants is agreed business; what the rep gives on top (line and order discounts,
    # manual prices under the pricelist's) is the concession the quote approval policy routes on.
    agreed_total: Decimal = Field(default=Decimal(0), **MONEY)  # Σ quantity × the pricelist's price
    concession_percent: Decimal = Field(default=Decimal(0), **PERCENT)  # (agreed_total − untaxed) / agreed_total
    margin_percent: Decimal = Field(default=Decimal(0), **PERCENT)
    amount_invoiced: Decimal = Field(default=Decimal(0), **MONEY)
    amount_paid: Decimal = Field(default=Decimal(0), **MONEY)
    promised_date: date | None = None
    workflow_id: str = Field(max_length=60)
    note: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    accepted_at: datetime | None = None
    accepted_by: str | None = Field(default=None, max_length=60)
    confirmed_at: datetime | None = None
    closed_at: datetime | None = None
    cancel_reason: str = Field(default="", max_length=500)
    version: int = 1  # bumped by every edit: optimistic concurrency for the edit form


class SalesOrderLine(SQLModel, table=True):
    __tablename__ = "sales_order_line"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no", name="sales_order_line_no_unique"),
        # 0 only for a line an amendment removed (it stays: shipments, invoices and its demand key refer to it);
        # models.orders keeps new lines positive. Migration 0009.
        CheckConstraint("quantity >= 0", name="sales_order_line_qty_not_negative"),
        CheckConstraint("qty_delivered + qty_cancelled <= quantity", name="sales_order_line_not_overdelivered"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="sales_order.id", index=True)
    line_no: int
    product_id: int = Field(foreign_key="product.id", index=True)
    description: str = Field(default="", max_length=200)
    quantity: Decimal = Field(**QTY)
    list_price: Decimal = Field(**MONEY)
    unit_price: Decimal = Field(**MONEY)         # after the pricelist rule (or a manual override)
    agreed_price: Decimal = Field(default=Decimal(0), **MONEY)  # the pricelist's price, even under a manual one
    price_rule_id: int | None = Field(default=None, foreign_key="pricelist_rule.id")
    manual_price: bool = False
    discount_percent: Decimal = Field(default=Decimal(0), **PERCENT)
    unit_cost: Decimal = Field(default=Decimal(0), **UNIT_COST)
    tax_rate: Decimal = Field(default=Decimal(0), **PERCENT)
    subtotal: Decimal = Field(default=Decimal(0), **MONEY)  # qty * price * (1-line%) * (1-order%)
    tax_amount: Decimal = Field(default=Decimal(0), **MONEY)
    drop_ship: bool = False
    promised_date: date | None = None
    qty_reserved: Decimal = Field(default=Decimal(0), **QTY)
    qty_delivered: Decimal = Field(default=Decimal(0), **QTY)
    qty_invoiced: Decimal = Field(default=Decimal(0), **QTY)
    qty_cancelled: Decimal = Field(default=Decimal(0), **QTY)


class Shipment(SQLModel, table=True):
    __tablename__ = "shipment"
    __table_args__ = (UniqueConstraint("order_id", "seq", name="shipment_order_seq_unique"),)
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=30, unique=True)  # SHP-Q-000123-1
    order_id: int = Field(foreign_key="sales_order.id", index=True)
    seq: int
    status: str = Field(default="pending", max_length=20, index=True)  # ShipmentStatus value
    drop_ship: bool = False
    promised_date: date | None = None
    tracking_ref: str = Field(default="", max_length=60)
    created_at: datetime = Field(default_factory=utcnow)
    picked_at: datetime | None = None
    packed_at: datetime | None = None
    shipped_at: datetime | None = None
    shipped_by: str | None = Field(default=None, max_length=60)


class ShipmentLine(SQLModel, table=True):
    __tablename__ = "shipment_line"
    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipment.id", index=True)
    order_line_id: int = Field(foreign_key="sales_order_line.id", index=True)
    product_id: int = Field(foreign_key="product.id")
    quantity: Decimal = Field(**QTY)
    move_id: int | None = Field(default=None, foreign_key="stock_move.id")


class CustomerInvoice(SQLModel, table=True):
    """A customer invoice or credit note, posted to the ledger when written (journal entry source key = key)."""

    __tablename__ = "customer_invoice"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=80, unique=True)  # idempotency key from the workflow, e.g. Q-000123/inv/1
    number: str = Field(max_length=20, unique=True)  # INV-000045 or CRN-000003
    kind: str = Field(default="invoice", max_length=12)  # invoice, credit_note
    order_id: int = Field(foreign_key="sales_order.id", index=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    invoice_date: date
    due_date: date
    amount_untaxed: Decimal = Field(**MONEY)
    amount_tax: Decimal = Field(**MONEY)
    amount_total: Decimal = Field(**MONEY)
    amount_residual: Decimal = Field(**MONEY)  # still to be paid (or refunded, for a credit note)
    status: str = Field(default="posted", max_length=12, index=True)  # posted, partial, paid
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = Field(default_factory=utcnow)


class CustomerInvoiceLine(SQLModel, table=True):
    __tablename__ = "customer_invoice_line"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="customer_invoice.id", index=True)
    order_line_id: int = Field(foreign_key="sales_order_line.id", index=True)
    product_id: int = Field(foreign_key="product.id")
    quantity: Decimal = Field(**QTY)
    unit_price: Decimal = Field(**MONEY)
    subtotal: Decimal = Field(**MONEY)
    tax_amount: Decimal = Field(**MONEY)
    cost_amount: Decimal = Field(default=Decimal(0), **MONEY)  # COGS moved out of the interim account


class CustomerPayment(SQLModel, table=True):
    """Money received, recorded by finance or imported; the bank reference makes a re-import harmless."""

    __tablename__ = "customer_payment"
    __table_args__ = (CheckConstraint("amount > 0", name="customer_payment_positive"),)
    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=60, unique=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    invoice_id: int | None = Field(default=None, foreign_key="customer_invoice.id", index=True)
    amount: Decimal = Field(**MONEY)
    payment_date: date
    recorded_by: str = Field(max_length=60)
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = Field(default_factory=utcnow)
