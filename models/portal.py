"""What a customer contact (models.users.CUSTOMER_ROLE) may see and do: their own customer's quotes and orders once
they were sent to them, that customer's invoices, and the answers a customer gives (accept or decline a quote, the
backorder choice, withdraw while the order waits on credit or on their answer).

`ContactViewer` is an `OrderViewer` (models/order_views.py), so every order query that takes a viewer (the list,
its counts and filters, one order in full) limits a contact to their customer without a check of its own: a filter
only narrows what `visible()` allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlmodel import Session

from models.common import CENT, ZERO
from models.order_views import OrderViewer
from models.sales import CustomerInvoice, SalesOrder
from workflows.contracts import OrderStatus

# A quote reaches the customer when it is sent; drafts, approvals and the approvers' verdicts are the company's own.
HIDDEN_FROM_CUSTOMERS = frozenset({OrderStatus.draft, OrderStatus.pending_approval, OrderStatus.changes_requested,
                                   OrderStatus.rejected})
CUSTOMER_STATUSES: tuple[str, ...] = tuple(s.value for s in OrderStatus if s not in HIDDEN_FROM_CUSTOMERS)
# The quote actions a customer takes (api/quotes.py ACTIONS); the workflow decides when each is allowed.
CUSTOMER_ACTIONS = frozenset({"accept", "cancel", "backorder"})
# The workflow lets a customer cancel anything not yet ended; the portal lets them withdraw only before goods move
# (a sent quote, an order on credit hold or waiting for their backorder answer). Later changes go through the rep.
CUSTOMER_CANCELLABLE = frozenset({OrderStatus.sent.value, OrderStatus.credit_hold.value,
                                  OrderStatus.awaiting_customer.value})
MAX_INVOICES = 200


@dataclass(frozen=True)
class ContactViewer(OrderViewer):
    """A customer contact as an order viewer: their customer's orders in CUSTOMER_STATUSES, whatever else a query
    asks for."""

    customer_id: int = 0

    @property
    def sees_all(self) -> bool:
        return False

    @property
    def sells(self) -> bool:
        return False

    def has(self, *roles: str) -> bool:
        return False

    def visible(self) -> ColumnElement[bool]:
        return and_(SalesOrder.customer_id == self.customer_id, SalesOrder.status.in_(CUSTOMER_STATUSES))

    def may_see(self, order: SalesOrder) -> bool:
        return order.customer_id == self.customer_id and order.status in CUSTOMER_STATUSES


def contact_actions(status: str) -> list[str]:
    """The answers a contact is offered on an order in `status` (the workflow still has the last word)."""
    offered = []
    if status == OrderStatus.sent.value:
        offered.append("accept")
    if status == OrderStatus.awaiting_customer.value:
        offered.append("backorder")
    if status in CUSTOMER_CANCELLABLE:
        offered.append("cancel")
    return offered


@dataclass(frozen=True)
class InvoiceRow:
    invoice: CustomerInvoice
    order_number: str


def customer_invoices(session: Session, customer_id: int, limit: int = MAX_INVOICES) -> list[InvoiceRow]:
    """The customer's invoices and credit notes, the newest first, with the order each belongs to."""
    rows = session.execute(
        select(CustomerInvoice, SalesOrder.number).join(SalesOrder, SalesOrder.id == CustomerInvoice.order_id)
        .where(CustomerInvoice.customer_id == customer_id)
        .order_by(CustomerInvoice.invoice_date.desc(), CustomerInvoice.id.desc()).limit(limit)).all()
    return [InvoiceRow(invoice, number) for invoice, number in rows]


def amount_due(session: Session, customer_id: int) -> Decimal:
    """What the customer's invoices leave to pay, less what open credit notes give back (order_views'
    OrderDetail.amount_due, over all their invoices)."""
    signed = case((CustomerInvoice.kind == "invoice", CustomerInvoice.amount_residual),
                  else_=-CustomerInvoice.amount_residual)
    total = session.scalar(select(func.sum(signed)).where(CustomerInvoice.customer_id == customer_id))
    # SQLite sums in floating point: back through str to the cent (the columns hold cents).
    return Decimal(str(total)).quantize(CENT) if total is not None else ZERO
