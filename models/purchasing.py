"""Purchase orders: drop-ship orders the supplier delivers straight to our customer, and requests for quotation
(draft purchase orders) that collect the shortfalls of reservations (replenishment). Procure to pay starts here.

Everything runs inside the transactions of the quote-to-cash functions (models/orders.py) that know the need, so
no workflow changes and a retried activity finds what its first attempt wrote:

- a drop-ship shipment orders its lines from their suppliers when it is made (`order_drop_ship`): one CONFIRMED
  purchase order per supplier, keyed by (shipment, supplier), delivered to the customer; its lines are keyed
  `<shipment number>/<order line id>`, the key of the delivery move;
- shipping it (`receive_drop_ship`) receives the purchase order line and values the delivery: a stock move from
  the suppliers' location straight to the customers' at the purchase price, Dr stock output / Cr stock input
  (Odoo's dropship under Anglo-Saxon accounting, erp-anchors b10): no stock of ours in between, the invoice then
  moves that value from stock output to cost of goods sold, and the vendor bill will clear stock input;
- a reservation short of stock (`replenish_shortfalls`) adds the shortfall to the one open draft purchase order
  of the product's main supplier for the warehouse (Odoo merges procurements into an open RFQ), once per demand
  key (`<quote>/L<n>`).

A product with no supplier (no offer, no reorder rule naming one) cannot be bought: nothing is ordered and an
audit event says so; a drop-ship line of it ships as before, without a valued move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, UniqueConstraint, func, select
from sqlmodel import Field, Session, SQLModel

from models.accounting import LineSpec, post_entry
from models.common import QTY, UNIT_COST, ZERO, LocationUsage, MoveKind, money, qty, utcnow
from models.inventory import DEFAULT_ACCOUNTS, StockError, category_accounts
from models.masterdata import Customer, Location, Product, ReorderRule, Supplier, SupplierOffer, Warehouse
from models.records import AuditEvent
from models.sales import SalesOrder, SalesOrderLine, Shipment, ShipmentLine
from models.stock import StockMove

NUMBER_SEQUENCE = "purchase_order"  # PO-000001, from models.orders.next_number


class PurchaseOrderState(StrEnum):
    draft = "draft"  # a request for quotation: lines may still be added (replenishment merges into it)
    confirmed = "confirmed"  # sent to the supplier
    received = "received"  # every line received
    cancelled = "cancelled"


OPEN_STATES = (PurchaseOrderState.draft, PurchaseOrderState.confirmed)


class PurchaseOrder(SQLModel, table=True):
    __tablename__ = "purchase_order"
    __table_args__ = (
        # Delivered either to our warehouse (replenishment) or to a customer (drop-ship), never both.
        CheckConstraint("(dest_warehouse_id IS NULL) <> (dest_customer_id IS NULL)",
                        name="purchase_order_one_destination"),
        # A drop-ship shipment orders once from each supplier (NULL for replenishment: not constrained).
        UniqueConstraint("shipment_id", "supplier_id", name="purchase_order_shipment_supplier_unique"),
        Index("ix_purchase_order_state_created", "state", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=20, unique=True)  # PO-000045
    supplier_id: int = Field(foreign_key="supplier.id", index=True)
    state: str = Field(default=PurchaseOrderState.draft, max_length=20)  # PurchaseOrderState value
    origin: str = Field(default="", max_length=200)  # the sales orders it serves, "Q-000123, ..."
    dest_warehouse_id: int | None = Field(default=None, foreign_key="warehouse.id")
    dest_customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)  # drop-ship: ship-to
    # drop-ship: the shipment it delivers (looked up through the unique (shipment, supplier) index)
    shipment_id: int | None = Field(default=None, foreign_key="shipment.id")
    # "rfq/<supplier id>/<warehouse id>" while this draft collects replenishment lines; whoever confirms or cancels
    # the draft clears it, so the next shortage opens a new one. Unique: one collecting draft per pair.
    open_key: str | None = Field(default=None, max_length=60, unique=True)
    expected_date: date  # order date + the supplier's lead time (Odoo: expected arrival)
    created_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    received_at: datetime | None = None
    cancelled_at: datetime | None = None


class PurchaseOrderLine(SQLModel, table=True):
    __tablename__ = "purchase_order_line"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no", name="purchase_order_line_no_unique"),
        CheckConstraint("quantity > 0", name="purchase_order_line_qty_positive"),
        CheckConstraint("qty_received >= 0 AND qty_received <= quantity", name="purchase_order_line_received_range"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="purchase_order.id", index=True)
    line_no: int
    product_id: int = Field(foreign_key="product.id", index=True)
    quantity: Decimal = Field(**QTY)
    unit_cost: Decimal = Field(**UNIT_COST)
    qty_received: Decimal = Field(default=Decimal(0), **QTY)
    sales_order_line_id: int | None = Field(default=None, foreign_key="sales_order_line.id", index=True)
    # What the line is for, and its idempotency key: "<shipment>/<order line id>" (drop-ship) or the
    # reservation demand "<quote>/L<n>" whose shortfall it replenishes.
    demand_key: str = Field(max_length=120, unique=True)


# ---------------------------------------------------------------------------------------------- suppliers


@dataclass(frozen=True)
class SupplierChoice:
    supplier_id: int
    unit_cost: Decimal
    lead_time_days: int


def choose_supplier(session: Session, product_id: int, quantity: Decimal, *,
                    warehouse_id: int | None = None) -> SupplierChoice | None:
    """Whom we buy `quantity` of the product from, at what unit cost and lead time; None when nobody sells it.

    The supplier: the warehouse's reorder rule's when it names an active one (the buyer's choice, as Odoo's
    orderpoint vendor), else the one with the cheapest offer valid for the quantity (minimum quantity reached;
    then the shorter lead time), else the one whose offer asks the smallest minimum. The price: that supplier's
    cheapest offer valid for the quantity, else the product's cost (an offer for 100 says nothing of 10)."""
    quantity = qty(quantity)
    offers = session.execute(
        select(SupplierOffer)
        .join(Supplier, Supplier.id == SupplierOffer.supplier_id)
        .where(SupplierOffer.product_id == product_id, Supplier.active.is_(True))
        .order_by(SupplierOffer.price, SupplierOffer.lead_time_days, SupplierOffer.id)
    ).scalars().all()
    valid = [o for o in offers if qty(o.min_qty) <= quantity]
    supplier_id = None
    if warehouse_id is not None:
        supplier_id = session.scalar(
            select(ReorderRule.supplier_id)
            .join(Supplier, Supplier.id == ReorderRule.supplier_id)
            .where(ReorderRule.product_id == product_id, ReorderRule.warehouse_id == warehouse_id,
                   Supplier.active.is_(True))
        )
    if supplier_id is None and valid:
        supplier_id = valid[0].supplier_id
    if supplier_id is None and offers:
        supplier_id = min(offers, key=lambda o: (qty(o.min_qty), o.price, o.id)).supplier_id
    if supplier_id is None:
        return None
    priced = next((o for o in valid if o.supplier_id == supplier_id), None)
    if priced is not None:
        return SupplierChoice(supplier_id, Decimal(priced.price), priced.lead_time_days)
    cost = session.scalar(select(Product.standard_cost).where(Product.id == product_id))
    lead = session.scalar(select(Supplier.default_lead_time_days).where(Supplier.id == supplier_id))
    return SupplierChoice(supplier_id, Decimal(cost or 0), lead or 0)


def _no_supplier(session: Session, number: str, product_id: int, why: str) -> None:
    """Say on the order's audit trail that a need was not ordered: once (a retry or a repeated reservation
    attempt finds the event)."""
    sku = session.scalar(select(Product.sku).where(Product.id == product_id))
    reason = f"no supplier sells {sku}: {why}"[:500]
    if session.scalar(select(AuditEvent.id).where(
            AuditEvent.entity_kind == "sales_order", AuditEvent.entity_id == number,
            AuditEvent.action == "purchase.no_supplier", AuditEvent.reason == reason)) is None:
        session.add(AuditEvent(actor="system", action="purchase.no_supplier", entity_kind="sales_order",
                               entity_id=number, reason=reason, data={"sku": sku}))


# ---------------------------------------------------------------------------------------------- writing


def _new_number(session: Session) -> str:
    from models.orders import next_number  # models.orders calls into this module: imported when used

    return next_number(session, NUMBER_SEQUENCE)


def _add_line(session: Session, po: PurchaseOrder, *, demand_key: str, product_id: int, quantity: Decimal,
              unit_cost: Decimal, sales_order_line_id: int | None = None) -> PurchaseOrderLine:
    last = session.scalar(select(func.max(PurchaseOrderLine.line_no)).where(PurchaseOrderLine.order_id == po.id))
    line = PurchaseOrderLine(order_id=po.id, line_no=(last or 0) + 1, product_id=product_id, quantity=qty(quantity),
                             unit_cost=unit_cost, sales_order_line_id=sales_order_line_id, demand_key=demand_key)
    session.add(line)
    session.flush()
    return line


def order_drop_ship(session: Session, shipment: Shipment, order: SalesOrder,
                    picks: list[tuple[SalesOrderLine, Decimal]], *, today: date) -> list[PurchaseOrder]:
    """Order a drop-ship shipment's lines from their suppliers: one confirmed purchase order per supplier,
    delivered to the order's customer, expected after the longest lead time of its lines. Idempotent: a line
    already ordered (its demand key) is not ordered again, a supplier's order for the shipment is reused."""
    by_supplier: dict[int, list[tuple[SalesOrderLine, Decimal, SupplierChoice]]] = {}
    for line, amount in picks:
        key = drop_ship_key(shipment.number, line.id)
        if session.scalar(select(PurchaseOrderLine.id).where(PurchaseOrderLine.demand_key == key)) is not None:
            continue
        choice = choose_supplier(session, line.product_id, amount)
        if choice is None:
            _no_supplier(session, order.number, line.product_id, f"drop-ship line {line.line_no} is not ordered")
            continue
        by_supplier.setdefault(choice.supplier_id, []).append((line, amount, choice))
    made = []
    now = utcnow()
    for supplier_id, items in by_supplier.items():
        po = session.scalars(select(PurchaseOrder).where(PurchaseOrder.shipment_id == shipment.id,
                                                         PurchaseOrder.supplier_id == supplier_id)).first()
        if po is None:
            lead = max(choice.lead_time_days for *_, choice in items)
            po = PurchaseOrder(number=_new_number(session), supplier_id=supplier_id,
                               state=PurchaseOrderState.confirmed, origin=order.number,
                               dest_customer_id=order.customer_id, shipment_id=shipment.id,
                               expected_date=today + timedelta(days=lead), created_at=now, confirmed_at=now)
            session.add(po)
            session.flush()
        for line, amount, choice in items:
            _add_line(session, po, demand_key=drop_ship_key(shipment.number, line.id), product_id=line.product_id,
                      quantity=amount, unit_cost=choice.unit_cost, sales_order_line_id=line.id)
        made.append(po)
    return made


def drop_ship_key(shipment_number: str, order_line_id: int) -> str:
    # The same key as the delivery move (models.orders._ship): one line of a shipment, one purchase, one move.
    return f"{shipment_number}/{order_line_id}"


def _partner_locations(session: Session) -> tuple[Location, Location]:
    """(the suppliers' location, the customers' location): the first of each, as models.orders._locations."""
    rows = session.scalars(
        select(Location).where(Location.usage.in_((LocationUsage.supplier, LocationUsage.customer)))
        .order_by(Location.id)
    ).all()
    suppliers = next((loc for loc in rows if loc.usage == LocationUsage.supplier), None)
    customers = next((loc for loc in rows if loc.usage == LocationUsage.customer), None)
    if suppliers is None or customers is None:
        raise StockError("there is no supplier or no customer location")
    return suppliers, customers


def receive_drop_ship(session: Session, shipment: Shipment, shipment_line: ShipmentLine, order: SalesOrder,
                      today: date, account_memo: dict | None = None) -> int | None:
    """The supplier delivered a drop-ship shipment line to the customer: receive its purchase order line and post
    the valued delivery move (suppliers → customers at the purchase price; Dr stock output / Cr stock input).
    Returns the move's id, for the shipment line (invoicing reads the cost of goods from it); None when the line
    was never ordered (no supplier, or a shipment made before purchase orders existed). Idempotent by the move key.

    models.inventory.post_move cannot post this move: it refuses supplier → customer ("no stock move goes from a
    supplier location to a customer location") and values only stock entering or leaving our own locations."""
    key = drop_ship_key(shipment.number, shipment_line.order_line_id)
    found = session.execute(
        select(PurchaseOrderLine, PurchaseOrder)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.order_id)
        .where(PurchaseOrderLine.demand_key == key,
               PurchaseOrder.state.in_((PurchaseOrderState.confirmed, PurchaseOrderState.received)))
    ).first()
    if found is None:
        return None
    po_line, po = found
    existing = session.scalar(select(StockMove.id).where(StockMove.key == key))
    if existing is not None:
        return existing
    amount = qty(shipment_line.quantity)
    unit_cost = Decimal(po_line.unit_cost)
    value = money(amount * unit_cost)
    product = session.get(Product, po_line.product_id)
    suppliers, customers = _partner_locations(session)
    move = StockMove(key=key, kind=MoveKind.delivery, product_id=product.id, quantity=amount,
                     source_location_id=suppliers.id, dest_location_id=customers.id, unit_cost=unit_cost,
                     value=value, demand_key=key)
    session.add(move)
    session.flush()
    if value:
        codes = category_accounts(session, product.category_id, account_memo)
        entry = post_entry(
            session, source_key=f"move:{key}", entry_date=today, journal="stock",
            memo=f"drop-ship {amount} x {product.sku} ({po.number})",
            lines=[LineSpec(codes.get("stock_output_account_id") or DEFAULT_ACCOUNTS["stock_output"], debit=value,
                            label=product.sku, customer_id=order.customer_id),
                   LineSpec(codes.get("stock_input_account_id") or DEFAULT_ACCOUNTS["stock_input"], credit=value,
                            label=product.sku, supplier_id=po.supplier_id)],
        )
        move.journal_entry_id = entry.id
        session.add(move)
    po_line.qty_received = min(qty(po_line.qty_received) + amount, qty(po_line.quantity))
    session.add(po_line)
    session.flush()
    open_left = session.scalar(select(func.count(PurchaseOrderLine.id)).where(
        PurchaseOrderLine.order_id == po.id, PurchaseOrderLine.qty_received < PurchaseOrderLine.quantity))
    if not open_left:
        po.state, po.received_at = PurchaseOrderState.received, utcnow()
        session.add(po)
    session.flush()
    return move.id


def cancel_drop_ship(session: Session, shipment_ids: list[int]) -> list[str]:
    """The shipments were cancelled before they shipped: cancel their open purchase orders (numbers returned)."""
    if not shipment_ids:
        return []
    pos = session.scalars(select(PurchaseOrder).where(PurchaseOrder.shipment_id.in_(shipment_ids),
                                                      PurchaseOrder.state.in_(OPEN_STATES))).all()
    now = utcnow()
    for po in pos:
        po.state, po.cancelled_at, po.open_key = PurchaseOrderState.cancelled, now, None
        session.add(po)
    session.flush()
    return [po.number for po in pos]


@dataclass(frozen=True)
class Shortfall:
    demand_key: str  # the reservation demand, "<quote>/L<n>"
    product_id: int
    quantity: Decimal


def _draft_key(supplier_id: int, warehouse_id: int) -> str:
    return f"rfq/{supplier_id}/{warehouse_id}"


def _locked_draft(session: Session, key: str) -> PurchaseOrder | None:
    return session.scalars(select(PurchaseOrder).where(PurchaseOrder.open_key == key).with_for_update()
                           .execution_options(populate_existing=True)).first()


def replenish_shortfalls(session: Session, shortfalls: list[Shortfall], *, warehouse_id: int, origin: str,
                         today: date | None = None) -> list[PurchaseOrderLine]:
    """Reservations for the warehouse came out short: put each shortfall on the open draft purchase order (request
    for quotation) of its product's main supplier (choose_supplier) for the warehouse, opening one if there is
    none. Returns the lines added or raised.

    Once per demand key: a retried activity or a later reservation attempt adds nothing; a larger shortfall (the
    order line was raised) raises the line while its order is still a draft; a smaller one is left as it is (the
    buyer trims the request before confirming it; surplus stock is sold later). A product nobody sells is not
    ordered (audit event on the order).

    Lock order on PostgreSQL, so that concurrent reservations short of the same suppliers queue and never
    deadlock: the caller's stock rows first (every line is reserved before this runs), then the purchase order
    number sequence when a draft must be opened, then the drafts in key order."""
    today = today or utcnow().date()
    wanted = {s.demand_key: s for s in shortfalls if qty(s.quantity) > 0}
    if not wanted:
        return []
    touched = []
    for line, state in session.execute(
        select(PurchaseOrderLine, PurchaseOrder.state)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.order_id)
        .where(PurchaseOrderLine.demand_key.in_(list(wanted)))
    ).all():
        need = wanted.pop(line.demand_key)
        if state == PurchaseOrderState.draft and qty(need.quantity) > qty(line.quantity):
            line.quantity = qty(need.quantity)
            session.add(line)
            touched.append(line)
    by_key: dict[str, list[tuple[Shortfall, SupplierChoice]]] = {}
    for need in wanted.values():
        choice = choose_supplier(session, need.product_id, need.quantity, warehouse_id=warehouse_id)
        if choice is None:
            _no_supplier(session, origin, need.product_id, f"the shortfall of {need.demand_key} is not replenished")
            continue
        by_key.setdefault(_draft_key(choice.supplier_id, warehouse_id), []).append((need, choice))
    if not by_key:
        session.flush()
        return touched
    open_keys = set(session.scalars(select(PurchaseOrder.open_key).where(PurchaseOrder.open_key.in_(list(by_key)))))
    numbers = [_new_number(session) for key in by_key if key not in open_keys]  # left unused if raced: a gap
    for key in sorted(by_key):
        items = by_key[key]
        expected = today + timedelta(days=max(choice.lead_time_days for _, choice in items))
        po = _locked_draft(session, key)
        if po is None:
            po = PurchaseOrder(number=numbers.pop(0) if numbers else _new_number(session),
                               supplier_id=items[0][1].supplier_id, dest_warehouse_id=warehouse_id, open_key=key,
                               expected_date=expected)
            session.add(po)
            session.flush()
        origins = [o for o in po.origin.split(", ") if o]
        if origin not in origins and len(po.origin) + len(origin) + 2 <= 200:
            po.origin = ", ".join([*origins, origin])
        po.expected_date = max(po.expected_date, expected)
        session.add(po)
        touched += [_add_line(session, po, demand_key=need.demand_key, product_id=need.product_id,
                              quantity=need.quantity, unit_cost=choice.unit_cost) for need, choice in items]
    return touched


# ---------------------------------------------------------------------------------------------- reading

SORTS = ("number", "created", "expected", "supplier", "state")
DEFAULT_SORT = "-created"
MAX_PAGE = 200


@dataclass(frozen=True)
class PurchaseOrderRow:
    number: str
    state: str
    supplier_code: str
    supplier_name: str
    origin: str
    drop_ship: bool
    destination_code: str  # the warehouse's code, or the drop-ship customer's
    destination_name: str
    expected_date: date
    created_at: datetime
    line_count: int
    amount_total: Decimal


@dataclass(frozen=True)
class PurchaseOrderLineRow:
    line_no: int
    sku: str
    product_name: str
    quantity: Decimal
    unit_cost: Decimal
    subtotal: Decimal
    qty_received: Decimal
    demand_key: str
    sales_order_line_no: int | None


@dataclass(frozen=True)
class PurchaseOrderDetail:
    order: PurchaseOrderRow
    shipment_number: str | None
    lines: list[PurchaseOrderLineRow]


def _columns():
    return (PurchaseOrder.number, PurchaseOrder.state, Supplier.code, Supplier.name, PurchaseOrder.origin,
            PurchaseOrder.dest_customer_id.is_not(None), func.coalesce(Warehouse.code, Customer.code),
            func.coalesce(Warehouse.name, Customer.name), PurchaseOrder.expected_date, PurchaseOrder.created_at,
            PurchaseOrder.id)


def _joined(stmt):
    return (stmt.join(Supplier, Supplier.id == PurchaseOrder.supplier_id)
            .outerjoin(Warehouse, Warehouse.id == PurchaseOrder.dest_warehouse_id)
            .outerjoin(Customer, Customer.id == PurchaseOrder.dest_customer_id))


def _amounts(session: Session, po_ids: list[int]) -> dict[int, tuple[int, Decimal]]:
    """(lines, total) per purchase order: Σ quantity × unit cost rounded per line, in Decimal (one query)."""
    found: dict[int, tuple[int, Decimal]] = {}
    if po_ids:
        for po_id, quantity, unit_cost in session.execute(
            select(PurchaseOrderLine.order_id, PurchaseOrderLine.quantity, PurchaseOrderLine.unit_cost)
            .where(PurchaseOrderLine.order_id.in_(po_ids))
        ):
            count, total = found.get(po_id, (0, ZERO))
            found[po_id] = (count + 1, total + money(qty(quantity) * Decimal(unit_cost)))
    return found


def _rows(session: Session, result) -> list[PurchaseOrderRow]:
    rows = list(result)
    amounts = _amounts(session, [r[-1] for r in rows])
    return [PurchaseOrderRow(number, state, s_code, s_name, origin, bool(drop_ship), d_code, d_name, expected,
                             created, *amounts.get(po_id, (0, ZERO)))
            for number, state, s_code, s_name, origin, drop_ship, d_code, d_name, expected, created, po_id in rows]


def search_purchase_orders(session: Session, *, state: str | None = None, supplier: str | None = None,
                           origin: str | None = None, sort: str = DEFAULT_SORT, offset: int = 0,
                           limit: int = 50) -> tuple[list[PurchaseOrderRow], int]:
    """One page of purchase orders and how many match. `supplier`: the supplier's code; `origin`: text in the
    origin (a sales order number finds the purchase orders that serve it)."""
    filters = []
    if state:
        filters.append(PurchaseOrder.state == state)
    if supplier:
        filters.append(Supplier.code == supplier.strip())
    if origin and origin.strip():
        escaped = origin.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        filters.append(PurchaseOrder.origin.like(f"%{escaped}%", escape="\\"))
    total = session.scalar(_joined(select(func.count(PurchaseOrder.id)).select_from(PurchaseOrder))
                           .where(*filters)) or 0
    key = sort.lstrip("-") if sort.lstrip("-") in SORTS else DEFAULT_SORT.lstrip("-")
    column = {"number": PurchaseOrder.number, "created": PurchaseOrder.created_at,
              "expected": PurchaseOrder.expected_date, "supplier": Supplier.code, "state": PurchaseOrder.state}[key]
    order = column.desc() if sort.startswith("-") else column.asc()
    stmt = (_joined(select(*_columns()).select_from(PurchaseOrder)).where(*filters)
            .order_by(order, PurchaseOrder.id.desc()).offset(offset).limit(limit))
    return _rows(session, session.execute(stmt).all()), total


def purchase_order_detail(session: Session, number: str) -> PurchaseOrderDetail | None:
    found = session.execute(_joined(select(*_columns(), PurchaseOrder.shipment_id).select_from(PurchaseOrder))
                            .where(PurchaseOrder.number == number)).first()
    if found is None:
        return None
    *columns, shipment_id = found
    row = _rows(session, [columns])[0]
    lines = session.execute(
        select(PurchaseOrderLine, Product.sku, Product.name, SalesOrderLine.line_no)
        .join(Product, Product.id == PurchaseOrderLine.product_id)
        .outerjoin(SalesOrderLine, SalesOrderLine.id == PurchaseOrderLine.sales_order_line_id)
        .where(PurchaseOrderLine.order_id == columns[-1])
        .order_by(PurchaseOrderLine.line_no)
    ).all()
    shipment_number = session.scalar(select(Shipment.number).where(Shipment.id == shipment_id)) if shipment_id else None
    return PurchaseOrderDetail(
        order=row, shipment_number=shipment_number,
        lines=[PurchaseOrderLineRow(ln.line_no, sku, name, qty(ln.quantity), Decimal(ln.unit_cost),
                                    money(qty(ln.quantity) * Decimal(ln.unit_cost)), qty(ln.qty_received),
                                    ln.demand_key, so_line_no)
               for ln, sku, name, so_line_no in lines],
    )
