"""The customer's side of the JSON API.

A customer contact (a user with a customer_id; models/portal.py) reads and answers their quotes through the same
endpoints as staff (api/quotes.py: GET /api/v1/quotes and /quotes/{number}; POST .../accept, .../backorder-choice
and .../cancel). To a contact those answer with the shapes below, which leave out what is the company's own: costs
and margins, approval tasks, credit figures and the process timeline. `GET /api/v1/portal/invoices` lists the
contact's invoices with what is due. Everything else refuses a contact (api/deps.py: staff is the default).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import ContactUser, CsrfProtected, SessionDep
from models import order_views as views
from models import portal
from models.sales import CustomerInvoice

router = APIRouter(prefix="/api/v1", tags=["portal"], dependencies=[CsrfProtected])

# Sorting by margin would rank a customer's quotes by what the company earns on them.
CONTACT_SORTS = frozenset(views.SORTS) - {"margin"}


class ContactLineOut(BaseModel):
    line_no: int
    sku: str
    description: str
    uom: str
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal
    subtotal: Decimal
    tax_rate: Decimal
    tax_amount: Decimal
    drop_ship: bool
    promised_date: date | None
    qty_delivered: Decimal
    qty_invoiced: Decimal
    qty_cancelled: Decimal
    removed: bool = Field(False, description="taken off the order by an amendment (kept at quantity 0, because "
                                             "deliveries and invoices refer to it); not part of the totals")
    removed_on: date | None = None


class ContactShipmentLineOut(BaseModel):
    line_no: int
    sku: str
    description: str
    quantity: Decimal


class ContactShipmentOut(BaseModel):
    number: str
    status: str
    promised_date: date | None
    tracking_ref: str
    shipped_at: datetime | None
    lines: list[ContactShipmentLineOut]


class ContactInvoiceOut(BaseModel):
    number: str
    kind: str
    order_number: str
    invoice_date: date
    due_date: date
    amount_untaxed: Decimal
    amount_tax: Decimal
    amount_total: Decimal
    amount_residual: Decimal = Field(description="still to be paid (for a credit note: still to be refunded)")
    status: str


class ContactQuoteSummary(BaseModel):
    number: str
    status: str
    customer_code: str
    customer_name: str
    customer_ref: str | None
    rep: str
    quote_date: date
    valid_until: date
    amount_untaxed: Decimal
    amount_total: Decimal
    amount_invoiced: Decimal
    amount_paid: Decimal
    promised_date: date | None
    version: int
    actions: list[str] = Field(description="what the customer may answer now: accept, backorder (the choice when "
                                           "stock is short), cancel")


class ContactQuotePage(BaseModel):
    items: list[ContactQuoteSummary]
    total: int
    offset: int
    limit: int
    sort: str
    counts: dict[str, int] = Field(description="orders per status under the filters (not the status); 'all' too")


class ContactQuoteOut(ContactQuoteSummary):
    amount_tax: Decimal
    order_discount_percent: Decimal
    backorder_preference: str
    cancel_reason: str
    lines: list[ContactLineOut]
    shipments: list[ContactShipmentOut]
    invoices: list[ContactInvoiceOut]
    amount_due: Decimal


class ContactInvoicePage(BaseModel):
    items: list[ContactInvoiceOut]
    amount_due: Decimal = Field(description="open invoices less open credit notes, over all of them")


# ------------------------------------------------------------------------------------------- converters


def _summary(row: views.OrderRow) -> ContactQuoteSummary:
    return ContactQuoteSummary(
        **{name: getattr(row, name) for name in ContactQuoteSummary.model_fields if name != "actions"},
        actions=portal.contact_actions(row.status))


def _invoice(invoice: CustomerInvoice, order_number: str) -> ContactInvoiceOut:
    return ContactInvoiceOut(
        number=invoice.number, kind=invoice.kind, order_number=order_number, invoice_date=invoice.invoice_date,
        due_date=invoice.due_date, amount_untaxed=invoice.amount_untaxed, amount_tax=invoice.amount_tax,
        amount_total=invoice.amount_total, amount_residual=invoice.amount_residual, status=invoice.status)


def contact_quote_of(d: views.OrderDetail) -> ContactQuoteOut:
    o, c = d.order, d.customer
    return ContactQuoteOut(
        number=o.number, status=o.status, customer_code=c.code, customer_name=c.name, customer_ref=o.customer_ref,
        rep=o.rep, quote_date=o.quote_date, valid_until=o.valid_until, amount_untaxed=o.amount_untaxed,
        amount_total=o.amount_total, amount_invoiced=o.amount_invoiced, amount_paid=o.amount_paid,
        promised_date=o.promised_date, version=o.version, actions=portal.contact_actions(o.status),
        amount_tax=o.amount_tax, order_discount_percent=o.order_discount_percent,
        backorder_preference=getattr(o.backorder_preference, "value", o.backorder_preference),
        cancel_reason=o.cancel_reason,
        lines=[ContactLineOut(line_no=r.line.line_no, sku=r.sku, description=r.name, uom=r.uom,
                              quantity=r.line.quantity, unit_price=r.line.unit_price,
                              discount_percent=r.line.discount_percent, subtotal=r.line.subtotal,
                              tax_rate=r.line.tax_rate, tax_amount=r.line.tax_amount, drop_ship=r.line.drop_ship,
                              promised_date=r.line.promised_date, qty_delivered=r.line.qty_delivered,
                              qty_invoiced=r.line.qty_invoiced, qty_cancelled=r.line.qty_cancelled,
                              removed=r.removed, removed_on=r.removed_on)  # who removed it is the company's own
               for r in d.lines],
        shipments=[ContactShipmentOut(number=s.shipment.number, status=s.shipment.status,
                                      promised_date=s.shipment.promised_date, tracking_ref=s.shipment.tracking_ref,
                                      shipped_at=s.shipment.shipped_at,
                                      lines=[ContactShipmentLineOut(line_no=x.line_no, sku=x.sku, description=x.name,
                                                                    quantity=x.line.quantity) for x in s.lines])
                   for s in d.shipments],
        invoices=[_invoice(i, o.number) for i in d.invoices],
        amount_due=d.amount_due,
    )


# ------------------------------------------------------------------------------------------- reads


def contact_quotes(session: Session, viewer: portal.ContactViewer, *, status: str | None,
                   filters: views.OrderFilters, sort: str, offset: int, limit: int) -> ContactQuotePage:
    """The contact's page of GET /api/v1/quotes: the viewer limits it to their customer whatever the filters say."""
    if sort.lstrip("-") not in CONTACT_SORTS:
        sort = views.DEFAULT_SORT
    try:
        page = views.search_orders(session, viewer, status=status, filters=filters, sort=sort, offset=offset,
                                   limit=limit)
    finally:
        session.commit()
    counts = {s: n for s, n in page.counts.items() if s == "all" or s in portal.CUSTOMER_STATUSES}
    return ContactQuotePage(items=[_summary(r) for r in page.rows], total=page.total, offset=page.offset,
                            limit=page.limit, sort=page.sort, counts=counts)


def contact_quote(session: Session, viewer: portal.ContactViewer, number: str) -> ContactQuoteOut | None:
    """The contact's GET /api/v1/quotes/{number}; None when it is not theirs (or not sent to them yet)."""
    try:
        detail = views.order_detail(session, viewer, number)
        return contact_quote_of(detail) if detail is not None else None
    finally:
        session.commit()


@router.get("/portal/invoices", response_model=ContactInvoicePage)
def contact_invoices(session: SessionDep, user: ContactUser) -> ContactInvoicePage:
    """Your invoices and credit notes (the newest first, at most 200) and what is due over all of them."""
    try:
        return ContactInvoicePage(
            items=[_invoice(r.invoice, r.order_number) for r in portal.customer_invoices(session, user.customer_id)],
            amount_due=portal.amount_due(session, user.customer_id))
    finally:
        session.commit()  # ends the read transaction (on SQLite it holds the write lock)
