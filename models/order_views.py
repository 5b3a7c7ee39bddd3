"""Read-only queries over quotes and orders for the JSON API (api/quotes.py) and the pages (api/order_pages.py):
the list with its status counts, filters, sorting and paging; one order in full (lines, shipments, invoices,
payments, credit exposure, approval tasks); open shipments for the warehouse.

Lists read tables, never Temporal (DESIGN: lists read the database; queries serve per-process detail). Each
function reads in a fixed number of queries (related rows come in one query per table, never one per row), and
never writes or commits: the caller ends its read transaction.

Who sees what (OrderViewer.visible): admins, sales managers, finance and the CFO see every order; a sales rep sees
the quotes they own; credit controllers see the orders on credit hold; the warehouse sees orders being fulfilled.
Roles add up: a rep who is also a credit controller sees their own quotes and every order on hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlmodel import Session

from models import orders
from models.approvals import HumanTask, TaskStatus
from models.common import ZERO
from models.masterdata import Branch, Customer, PaymentTerm, Product, UnitOfMeasure, Warehouse
from models.records import AuditEvent
from models.sales import (
    CustomerInvoice,
    CustomerInvoiceLine,
    CustomerPayment,
    SalesOrder,
    SalesOrderLine,
    Shipment,
    ShipmentLine,
)
from workflows import rules
from workflows.contracts import AMENDMENT_KIND, OrderStatus, ShipmentStatus

# Status tabs in the order a quote moves through them; "all" first.
STATUSES: tuple[str, ...] = tuple(s.value for s in OrderStatus)
# Orders whose uninvoiced amount counts towards the customer's credit exposure (ERPNext b5; models/orders too).
# What the warehouse works on.
FULFILMENT_STATUSES = (OrderStatus.confirmed.value, OrderStatus.delivered.value, OrderStatus.done.value)
OPEN_SHIPMENT_STATUSES = (ShipmentStatus.pending.value, ShipmentStatus.picked.value, ShipmentStatus.packed.value)
OPEN_TASK_STATUSES = (TaskStatus.ready.value, TaskStatus.reserved.value)

SEE_ALL_ROLES = frozenset({"admin", "sales-manager", "finance", "cfo"})
SALES_ROLES = frozenset({"sales", "sales-manager"})

SORTS: dict[str, Any] = {
    "number": SalesOrder.id,  # numbers are handed out in order: the id sorts them without string tricks
    "created": SalesOrder.created_at,
    "date": SalesOrder.quote_date,
    "valid_until": SalesOrder.valid_until,
    "customer": Customer.name,
    "rep": SalesOrder.rep,
    "total": SalesOrder.amount_total,
    "margin": SalesOrder.margin_percent,
    "status": SalesOrder.status,
}
SORT_LABELS = {"number": "Number", "created": "Created", "date": "Date", "valid_until": "Valid until",
               "customer": "Customer", "rep": "Rep", "total": "Total", "margin": "Margin", "status": "Status"}
DEFAULT_SORT = "-created"
MAX_PAGE = 200
MAX_TEXT = 100


@dataclass(frozen=True)
class OrderViewer:
    username: str
    roles: frozenset[str]

    @property
    def sees_all(self) -> bool:
        return bool(self.roles & SEE_ALL_ROLES)

    @property
    def sells(self) -> bool:
        return bool(self.roles & (SALES_ROLES | {"admin"}))

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)

    def visible(self) -> ColumnElement[bool]:
        """The orders this viewer may see, as a WHERE condition."""
        if self.sees_all:
            return true()
        parts: list[ColumnElement[bool]] = []
        if "sales" in self.roles:
            parts.append(SalesOrder.rep == self.username)
        if "credit-controller" in self.roles:
            parts.append(SalesOrder.status == OrderStatus.credit_hold.value)
        if "warehouse" in self.roles:
            parts.append(SalesOrder.status.in_(FULFILMENT_STATUSES))
        return or_(*parts) if parts else false()

    def may_see(self, order: SalesOrder) -> bool:
        """The same rule as `visible()`, for one loaded row."""
        if self.sees_all:
            return True
        return (("sales" in self.roles and order.rep == self.username)
                or ("credit-controller" in self.roles and order.status == OrderStatus.credit_hold.value)
                or ("warehouse" in self.roles and order.status in FULFILMENT_STATUSES))


@dataclass(frozen=True)
class OrderFilters:
    customer: str | None = None  # a customer code, or text in the code or name
    rep: str | None = None
    date_from: date | None = None  # quote date, inclusive
    date_to: date | None = None
    text: str | None = None  # in the number or the customer's reference

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.customer and self.customer.strip():
            found.append(_contains(self.customer, Customer.code, Customer.name))
        if self.rep and self.rep.strip():
            found.append(SalesOrder.rep == self.rep.strip())
        if self.date_from is not None:
            found.append(SalesOrder.quote_date >= self.date_from)
        if self.date_to is not None:
            found.append(SalesOrder.quote_date <= self.date_to)
        if self.text and self.text.strip():
            found.append(_contains(self.text, SalesOrder.number, SalesOrder.customer_ref))
        return found

    def as_dict(self) -> dict[str, str]:
        data = {"customer": self.customer, "rep": self.rep, "date_from": self.date_from, "date_to": self.date_to,
                "q": self.text}
        return {k: str(v) for k, v in data.items() if v not in (None, "")}


def _contains(text: str, *columns: Any) -> ColumnElement[bool]:
    # LIKE wildcards typed by the user match literally.
    escaped = text.strip()[:MAX_TEXT].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(*(c.ilike(f"%{escaped}%", escape="\\") for c in columns))


@dataclass(frozen=True)
class OrderRow:
    """One line of the list."""

    number: str
    status: str
    customer_code: str
    customer_name: str
    customer_ref: str | None
    channel: str
    rep: str
    quote_date: date
    valid_until: date
    amount_untaxed: Decimal
    amount_total: Decimal
    discount_percent: Decimal
    margin_percent: Decimal
    amount_invoiced: Decimal
    amount_paid: Decimal
    promised_date: date | None
    version: int
    created_at: Any


@dataclass
class OrderPage:
    rows: list[OrderRow]
    total: int
    offset: int
    limit: int
    sort: str
    counts: dict[str, int]  # per status, under the filters but not the status filter; "all" is their sum


def normal_sort(sort: str | None) -> str:
    return sort if sort and sort.lstrip("-") in SORTS and sort.count("-") <= 1 else DEFAULT_SORT


def _row(order: SalesOrder, code: str, name: str) -> OrderRow:
    return OrderRow(
        number=order.number, status=order.status, customer_code=code, customer_name=name,
        customer_ref=order.customer_ref, channel=order.channel, rep=order.rep, quote_date=order.quote_date,
        valid_until=order.valid_until, amount_untaxed=order.amount_untaxed, amount_total=order.amount_total,
        discount_percent=order.discount_percent, margin_percent=order.margin_percent,
        amount_invoiced=order.amount_invoiced, amount_paid=order.amount_paid, promised_date=order.promised_date,
        version=order.version, created_at=order.created_at,
    )


def search_orders(session: Session, viewer: OrderViewer, *, status: str | None = None,
                  filters: OrderFilters = OrderFilters(), sort: str | None = None, offset: int = 0,
                  limit: int = 50) -> OrderPage:
    """One page of the orders the viewer may see. An offset past the end gives the last page."""
    sort = normal_sort(sort)
    limit = max(1, min(limit, MAX_PAGE))
    base = [viewer.visible(), *filters.conditions()]
    counted = dict(session.execute(
        select(SalesOrder.status, func.count()).join(Customer, Customer.id == SalesOrder.customer_id)
        .where(*base).group_by(SalesOrder.status)
    ).all())
    counts = {s: int(counted.get(s, 0)) for s in STATUSES}
    counts["all"] = sum(counts.values())
    total = counts["all"] if status is None else counts.get(status, 0)
    if total and offset >= total:
        offset = (total - 1) // limit * limit
    where = [*base] if status is None else [*base, SalesOrder.status == status]
    column = SORTS[sort.lstrip("-")]
    stmt = (select(SalesOrder, Customer.code, Customer.name)
            .join(Customer, Customer.id == SalesOrder.customer_id).where(*where)
            .order_by(column.desc() if sort.startswith("-") else column.asc(), SalesOrder.id.desc())
            .offset(offset).limit(limit))
    rows = [_row(o, code, name) for o, code, name in session.execute(stmt).all()]
    return OrderPage(rows, total, offset, limit, sort, counts)


# ------------------------------------------------------------------------------------------- one order


@dataclass(frozen=True)
class LineRow:
    line: SalesOrderLine
    sku: str
    name: str
    uom: str
    barcode: str | None
    # The amendment that removed the line (models.orders.amend_order): its day and who made it.
    removed_on: date | None = None
    removed_by: str = ""

    @property
    def removed(self) -> bool:
        """Taken off the order by an amendment: it stays at quantity 0, because shipments, invoices and its
        reservation refer to it (new lines always have a positive quantity)."""
        return self.line.quantity == 0

    @property
    def qty_open(self) -> Decimal:
        """Ordered and neither delivered nor cancelled."""
        return self.line.quantity - self.line.qty_delivered - self.line.qty_cancelled

    @property
    def margin(self) -> Decimal:
        return self.line.subtotal - (self.line.quantity * self.line.unit_cost).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class ShipmentLineRow:
    line: ShipmentLine
    sku: str
    name: str
    uom: str
    barcode: str | None
    line_no: int


@dataclass
class ShipmentRow:
    shipment: Shipment
    lines: list[ShipmentLineRow] = field(default_factory=list)
    quote_number: str = ""
    customer_code: str = ""
    customer_name: str = ""
    warehouse_code: str = ""

    @property
    def open(self) -> bool:
        return self.shipment.status in OPEN_SHIPMENT_STATUSES

    @property
    def next_step(self) -> str | None:
        return {"pending": "picked", "picked": "packed", "packed": "shipped"}.get(self.shipment.status)

    def codes(self) -> dict[str, str]:
        """Every code a scanner may send for this shipment's lines (barcode or SKU, case-insensitive) -> SKU."""
        found: dict[str, str] = {}
        for r in self.lines:
            found[r.sku.casefold()] = r.sku
            if r.barcode:
                found[r.barcode.casefold()] = r.sku
        return found


@dataclass(frozen=True)
class CreditSummary:
    limit: Decimal
    posted_receivable: Decimal
    uninvoiced_orders: Decimal  # other orders in confirmed/delivered/credit_hold, not yet invoiced
    this_order: Decimal  # what of this order is not invoiced yet
    exposure: Decimal
    headroom: Decimal
    over_limit: bool
    counts_this_order: bool  # false once the order is closed (done, cancelled ...): it no longer adds exposure


@dataclass
class OrderDetail:
    order: SalesOrder
    customer: Customer
    branch: Branch | None
    warehouse: Warehouse | None
    payment_term: PaymentTerm | None
    lines: list[LineRow]
    shipments: list[ShipmentRow]
    invoices: list[CustomerInvoice]
    payments: list[CustomerPayment]  # payments allocated to this order's invoices
    invoice_numbers: dict[int, str]  # invoice id -> number, to name a payment's invoice
    tasks: list[HumanTask]  # approval and credit-hold tasks, open ones first
    credit: CreditSummary

    @property
    def open_tasks(self) -> list[HumanTask]:
        return [t for t in self.tasks if t.status in OPEN_TASK_STATUSES]

    @property
    def amount_due(self) -> Decimal:
        return sum((i.amount_residual for i in self.invoices if i.kind == "invoice"), ZERO) - sum(
            (i.amount_residual for i in self.invoices if i.kind != "invoice"), ZERO)


def find_order(session: Session, number: str) -> SalesOrder | None:
    return session.scalars(select(SalesOrder).where(SalesOrder.number == number)).first()


def visible_order(session: Session, viewer: OrderViewer, number: str) -> SalesOrder | None:
    """The order, if it exists and the viewer may see it (else None: 'not found' for both)."""
    order = find_order(session, number) if number and len(number) <= 20 else None
    return order if order is not None and viewer.may_see(order) else None


def credit_summary(session: Session, order: SalesOrder, customer: Customer) -> CreditSummary:
    """The customer's credit exposure as the credit check sees it (ERPNext b5): posted receivables, plus the
    uninvoiced part of their other open orders, plus this order's uninvoiced part while it is live. Display only;
    the decision is models.orders.credit_check, with the same formula."""
    uninvoiced = orders.uninvoiced_orders(session, customer.id, exclude_order_id=order.id)
    live = order.status not in (OrderStatus.done.value, OrderStatus.cancelled.value, OrderStatus.rejected.value,
                                OrderStatus.expired.value)
    this = rules.uninvoiced_amount(order.amount_total, order.amount_invoiced) if live else ZERO
    posted = orders.posted_receivable(session, customer.id)
    decision = rules.credit_check(posted_receivable=posted, uninvoiced_orders=uninvoiced, this_order=this,
                                  limit=customer.credit_limit or ZERO)
    return CreditSummary(limit=decision.limit, posted_receivable=posted, uninvoiced_orders=uninvoiced,
                         this_order=this, exposure=decision.exposure, headroom=decision.headroom,
                         over_limit=decision.over_limit, counts_this_order=live)


def order_lines(session: Session, order_id: int, number: str | None = None) -> list[LineRow]:
    """The order's lines in line order; with the order's `number`, removed lines say when and by whom."""
    stmt = (select(SalesOrderLine, Product.sku, Product.name, UnitOfMeasure.name, Product.barcode)
            .join(Product, Product.id == SalesOrderLine.product_id)
            .join(UnitOfMeasure, UnitOfMeasure.id == Product.uom_id)
            .where(SalesOrderLine.order_id == order_id).order_by(SalesOrderLine.line_no))
    rows = [LineRow(line, sku, line.description or name, uom, barcode)
            for line, sku, name, uom, barcode in session.execute(stmt).all()]
    if number is None or not any(r.removed for r in rows):
        return rows
    removals = _removals(session, number)
    return [replace(r, removed_on=removals[r.line.line_no][0], removed_by=removals[r.line.line_no][1])
            if r.removed and r.line.line_no in removals else r for r in rows]


def _removals(session: Session, number: str) -> dict[int, tuple[date, str]]:
    """line no -> (day, actor) of the amendment that last removed it, from the audit events amend_order writes
    (their data lists the line numbers it removed)."""
    found: dict[int, tuple[date, str]] = {}
    for at, actor, data in session.execute(
        select(AuditEvent.at, AuditEvent.actor, AuditEvent.data)
        .where(AuditEvent.entity_kind == "sales_order", AuditEvent.entity_id == number,
               AuditEvent.action == "order.amended").order_by(AuditEvent.id)
    ).all():
        for line_no in (data or {}).get("removed") or ():
            found[int(line_no)] = (at.date(), actor)
    return found


def _shipment_lines(session: Session, shipment_ids: Sequence[int]) -> dict[int, list[ShipmentLineRow]]:
    if not shipment_ids:
        return {}
    stmt = (select(ShipmentLine, Product.sku, Product.name, UnitOfMeasure.name, Product.barcode,
                   SalesOrderLine.line_no)
            .join(Product, Product.id == ShipmentLine.product_id)
            .join(UnitOfMeasure, UnitOfMeasure.id == Product.uom_id)
            .join(SalesOrderLine, SalesOrderLine.id == ShipmentLine.order_line_id)
            .where(ShipmentLine.shipment_id.in_(list(shipment_ids)))
            .order_by(ShipmentLine.shipment_id, SalesOrderLine.line_no, ShipmentLine.id))
    found: dict[int, list[ShipmentLineRow]] = {i: [] for i in shipment_ids}
    for line, sku, name, uom, barcode, line_no in session.execute(stmt).all():
        found[line.shipment_id].append(ShipmentLineRow(line, sku, name, uom, barcode, line_no))
    return found


def order_tasks(session: Session, number: str) -> list[HumanTask]:
    """The quote's approval tasks, its credit-hold tasks (request keys quote:<n> and credit_hold:<n>) and the
    tasks of its amendments sent to approval (kind "amendment", request keys amendment:<n>:<k>)."""
    tasks = list(session.scalars(
        select(HumanTask).where(or_(HumanTask.request_key.in_([f"quote:{number}", f"credit_hold:{number}"]),
                                    # By the indexed kind: a LIKE on the key prefix would scan the whole table.
                                    (HumanTask.kind == AMENDMENT_KIND) & (HumanTask.document_ref == number)))
        .order_by(HumanTask.created_at, HumanTask.id)))
    # Open tasks first (what someone has to do now), then the closed ones in the order they happened.
    return sorted(tasks, key=lambda t: t.status not in OPEN_TASK_STATUSES)


def order_detail(session: Session, viewer: OrderViewer, number: str) -> OrderDetail | None:
    order = visible_order(session, viewer, number)
    if order is None:
        return None
    customer = session.get(Customer, order.customer_id)
    shipments = list(session.scalars(select(Shipment).where(Shipment.order_id == order.id).order_by(Shipment.seq)))
    lines_by_shipment = _shipment_lines(session, [s.id for s in shipments])
    invoices = list(session.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id)
                                    .order_by(CustomerInvoice.invoice_date, CustomerInvoice.id)))
    invoice_ids = [i.id for i in invoices]
    payments = list(session.scalars(
        select(CustomerPayment).where(CustomerPayment.invoice_id.in_(invoice_ids))
        .order_by(CustomerPayment.payment_date, CustomerPayment.id))) if invoice_ids else []
    return OrderDetail(
        order=order,
        customer=customer,
        branch=session.get(Branch, order.branch_id) if order.branch_id else None,
        warehouse=session.get(Warehouse, order.warehouse_id),
        payment_term=session.get(PaymentTerm, customer.payment_term_id) if customer.payment_term_id else None,
        lines=order_lines(session, order.id, order.number),
        shipments=[ShipmentRow(s, lines_by_shipment.get(s.id, []), order.number, customer.code, customer.name)
                   for s in shipments],
        invoices=invoices,
        payments=payments,
        invoice_numbers={i.id: i.number for i in invoices},
        tasks=order_tasks(session, order.number),
        credit=credit_summary(session, order, customer),
    )


def invoice_lines(session: Session, invoice_ids: Iterable[int]) -> dict[int, list[CustomerInvoiceLine]]:
    ids = list(invoice_ids)
    found: dict[int, list[CustomerInvoiceLine]] = {i: [] for i in ids}
    if ids:
        for line in session.scalars(select(CustomerInvoiceLine).where(CustomerInvoiceLine.invoice_id.in_(ids))
                                    .order_by(CustomerInvoiceLine.id)):
            found[line.invoice_id].append(line)
    return found


# ------------------------------------------------------------------------------------------- the warehouse


def open_shipments(session: Session, *, warehouse_id: int | None = None, limit: int = 200) -> list[ShipmentRow]:
    """Shipments waiting for the warehouse (pending, picked, packed), the earliest promised first."""
    stmt = (select(Shipment, SalesOrder.number, Customer.code, Customer.name, Warehouse.code)
            .join(SalesOrder, SalesOrder.id == Shipment.order_id)
            .join(Customer, Customer.id == SalesOrder.customer_id)
            .join(Warehouse, Warehouse.id == SalesOrder.warehouse_id)
            .where(Shipment.status.in_(OPEN_SHIPMENT_STATUSES), Shipment.drop_ship.is_(False)))
    if warehouse_id is not None:
        stmt = stmt.where(SalesOrder.warehouse_id == warehouse_id)
    # Shipments without a promised date go last; then the oldest first.
    stmt = stmt.order_by(Shipment.promised_date.is_(None), Shipment.promised_date, Shipment.created_at,
                         Shipment.id).limit(limit)
    found = session.execute(stmt).all()
    lines = _shipment_lines(session, [s.id for s, *_ in found])
    return [ShipmentRow(s, lines.get(s.id, []), number, code, name, wh) for s, number, code, name, wh in found]


def shipment_row(session: Session, shipment_number: str) -> ShipmentRow | None:
    if not shipment_number or len(shipment_number) > 30:
        return None
    found = session.execute(
        select(Shipment, SalesOrder.number, Customer.code, Customer.name, Warehouse.code)
        .join(SalesOrder, SalesOrder.id == Shipment.order_id)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .join(Warehouse, Warehouse.id == SalesOrder.warehouse_id)
        .where(Shipment.number == shipment_number)
    ).first()
    if found is None:
        return None
    shipment, number, code, name, wh = found
    return ShipmentRow(shipment, _shipment_lines(session, [shipment.id])[shipment.id], number, code, name, wh)


def match_scans(row: ShipmentRow, scanned: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[int, str]],
                                                                    list[str]]:
    """Scanned barcodes or SKUs against a shipment's lines: (the SKUs scanned, in order; [(index, code)] of codes
    that match no line; SKUs of lines nobody scanned)."""
    codes = row.codes()
    skus: list[str] = []
    unknown: list[tuple[int, str]] = []
    for i, code in enumerate(scanned):
        sku = codes.get(code.strip().casefold())
        if sku is None:
            unknown.append((i, code))
        else:
            skus.append(sku)
    missing = [r.sku for r in row.lines if r.sku not in skus]
    return tuple(skus), unknown, list(dict.fromkeys(missing))


def customer_by_code(session: Session, code: str) -> Customer | None:
    return session.scalars(select(Customer).where(Customer.code == code)).first() if code else None


def customers_for_form(session: Session, limit: int = 500) -> list[tuple[str, str]]:
    return [(c, n) for c, n in session.execute(
        select(Customer.code, Customer.name).where(Customer.active.is_(True)).order_by(Customer.code).limit(limit))]


def open_invoices(session: Session, customer_id: int | None = None, limit: int = 200) -> list[tuple[Any, ...]]:
    """Invoices with something left to pay (for the payment form): (invoice, order number, customer code)."""
    stmt = (select(CustomerInvoice, SalesOrder.number, Customer.code)
            .join(SalesOrder, SalesOrder.id == CustomerInvoice.order_id)
            .join(Customer, Customer.id == CustomerInvoice.customer_id)
            .where(CustomerInvoice.kind == "invoice", CustomerInvoice.amount_residual > 0))
    if customer_id is not None:
        stmt = stmt.where(CustomerInvoice.customer_id == customer_id)
    return [tuple(r) for r in session.execute(
        stmt.order_by(CustomerInvoice.due_date, CustomerInvoice.id).limit(limit)).all()]


def reps(session: Session, viewer: OrderViewer) -> list[str]:
    """Reps to offer in the list's filter: everyone with an order the viewer can see."""
    return list(session.scalars(select(SalesOrder.rep).where(viewer.visible()).distinct().order_by(SalesOrder.rep)
                                .limit(200)))

