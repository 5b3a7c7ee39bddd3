"""Quote to cash over the sales tables (models/sales.py): quotes and their pricing, status changes, credit
exposure, reservation, shipments, invoices with their journal entries, payments, and cancellation.

Every function works in the caller's transaction (flush, never commit) and is idempotent by a natural key, because
the activities that call them (activities/sales.py) are retried by Temporal:

- quotes by number (`next_number`), an edit that changes nothing bumps no version;
- reservations by demand key `<quote number>/L<line no>` (models.inventory.reserve tops a demand up, never doubles);
- shipments by (order, seq); stock moves by `<shipment number>/<order line id>`;
- invoices by the workflow's key (also the journal entry's source key); payments by bank reference;
- cancellation by the order's status (a cancelled order is not cancelled twice; the first result is kept in the
  audit event and returned again).

Pricing and every figure a person checks (line amounts, totals, exposure, invoiceable quantities) come from the
pure rules in workflows/rules.py, so the workflow, these functions and the tests agree on one formula.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models import inventory, outbox, purchasing
from models.accounting import LineSpec, post_entry
from models.approval_policies import body_from_json, policy_in_force
from models.common import ZERO, AccountType, BackorderPreference, LocationUsage, money, qty, utcnow
from models.ledger import JournalLine
from models.masterdata import (
    Account,
    Branch,
    Customer,
    Location,
    PaymentTerm,
    PricelistRule,
    Product,
    ProductCategory,
    SupplierOffer,
    Tax,
    Warehouse,
)
from models.policy_designer import conditions_text
from models.records import AuditEvent
from models.sales import (
    CustomerInvoice,
    CustomerInvoiceLine,
    CustomerPayment,
    NumberSequence,
    SalesOrder,
    SalesOrderLine,
    Shipment,
    ShipmentLine,
)
from models.stock import Quant, ReservationDemand, StockMove
from models.users import User
from workflows import rules
from workflows.approval_rules import DocumentKind, RequestFacts, matches
from workflows.contracts import (
    AcceptOrderResult,
    AmendedLine,
    AmendmentApproval,
    AmendOrderCommand,
    AmendOrderResult,
    CancelBackorderResult,
    CancelOrderResult,
    ConfirmOrderResult,
    CreditCheckResult,
    EditQuoteCommand,
    InvoiceState,
    OrderBalance,
    OrderNotifyInput,
    OrderStatus,
    QuoteLineInput,
    QuoteLineState,
    QuoteState,
    ReserveOrderResult,
    ShipmentLineState,
    ShipmentState,
    SettleOrderResult,
    ShipmentStatus,
    q2c_id,
)

CHANNELS = ("web", "api", "edi", "ecommerce")
DEFAULT_VALIDITY_DAYS = 30
DEFAULT_PAYMENT_TERM_DAYS = 30
# Far above any real order, far below the NUMERIC(16, x) columns: a typo becomes a clear refusal, not an overflow.
MAX_QUANTITY = Decimal("1000000000")
MAX_AMOUNT = Decimal("1000000000000")
SEQUENCES = {"quote": "Q-", "invoice": "INV-", "credit_note": "CRN-", "payment": "PAY-", "purchase_order": "PO-"}
NUMBER_WIDTH = 6

# Statuses from which nothing moves any more (the workflow has finished with the order).
TERMINAL = frozenset({OrderStatus.done, OrderStatus.rejected, OrderStatus.expired, OrderStatus.cancelled})
EDITABLE = frozenset({OrderStatus.draft, OrderStatus.changes_requested})
# Accepted orders whose value counts as uninvoiced exposure (erp-anchors b5: submitted, not closed).
OPEN_EXPOSURE = (OrderStatus.confirmed, OrderStatus.delivered, OrderStatus.credit_hold)
INVOICEABLE = frozenset({OrderStatus.confirmed, OrderStatus.awaiting_customer, OrderStatus.delivered})
# Moving out of "sent" into one of these means the customer accepted.
ACCEPTED = frozenset({OrderStatus.credit_hold, OrderStatus.awaiting_customer, OrderStatus.confirmed})
SHIPMENT_STEPS = (ShipmentStatus.picked, ShipmentStatus.packed, ShipmentStatus.shipped)
OPEN_SHIPMENT = (ShipmentStatus.pending, ShipmentStatus.picked, ShipmentStatus.packed)

# Fallback account codes (models/setup.py chart) when a category names none.
RECEIVABLE_ACCOUNT = "1100"
BANK_ACCOUNT = "1900"
INCOME_ACCOUNT = "4000"
COGS_ACCOUNT = "5000"
STOCK_OUTPUT_ACCOUNT = "1220"
UNALLOCATED = "unallocated"


# ------------------------------------------------------------------------------------------------- errors


class OrderInputError(ValueError):
    """Bad input, named by field (e.g. "lines[2].sku") with a plain-English reason: the API answers 422."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OrderNotFound(OrderInputError):
    """No quote or order with that number (the API may answer 404)."""

    def __init__(self, number: str) -> None:
        super().__init__("quote_number", f"no quote or order with number {number!r}")
        self.number = number


class DuplicateCustomerRef(ValueError):
    """The customer's reference is already on another quote: a repeated post from a channel is refused."""

    def __init__(self, customer_code: str, customer_ref: str, existing_number: str) -> None:
        super().__init__(
            f"customer {customer_code} already has quote {existing_number} with reference {customer_ref!r}"
        )
        self.customer_code = customer_code
        self.customer_ref = customer_ref
        self.existing_number = existing_number


class OrderStateError(ValueError):
    """An action the order's current status does not allow (the API answers 409)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = str(status)
        self.reason = reason


class StaleVersion(OrderStateError):
    """The quote changed since the editor loaded it (optimistic concurrency)."""


class CreditLimitExceeded(OrderStateError):
    """An amendment that raises the order would take the customer over the credit limit: refused (the API answers
    409) rather than putting a running order on hold."""


# ------------------------------------------------------------------------------------------------- numbers


def next_number(session: Session, name: str) -> str:
    """The next business number of a sequence: quote Q-000001, invoice INV-000001, credit_note CRN-000001,
    payment PAY-000001. The sequence row is locked for the rest of the transaction, so two transactions never
    hand out one number (gaps are possible when a transaction rolls back)."""
    if name not in SEQUENCES:
        raise ValueError(f"unknown number sequence {name!r}")
    # One upsert takes the number: it creates the sequence at 1 or counts it up, and either way holds the row's
    # lock to the end of the transaction (integers: SQLite's arithmetic is exact here). A Core statement does not
    # autoflush: flush first, so a sequence row added in this session is counted up, not inserted twice.
    session.flush()
    prefix, taken = session.execute(
        _next_number_statement(session.get_bind().dialect.name),
        {"name": name, "prefix": SEQUENCES[name]},
    ).one()
    return f"{prefix}{taken - 1:0{NUMBER_WIDTH}d}"


@lru_cache(maxsize=4)
def _next_number_statement(dialect_name: str):
    # Built once per dialect (bindparams): building an upsert costs more than running it.
    table = NumberSequence.__table__
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (
        dialect.insert(table)
        .values(name=bindparam("name"), prefix=bindparam("prefix"), next_value=2)
        .on_conflict_do_update(index_elements=["name"], set_={"next_value": table.c.next_value + 1})
        .returning(table.c.prefix, table.c.next_value)
    )


# ------------------------------------------------------------------------------------------------- quotes


@dataclass(frozen=True)
class QuoteDraft:
    customer_code: str
    lines: tuple[QuoteLineInput, ...]
    customer_ref: str | None = None
    channel: str = "web"
    valid_until: date | None = None  # default: quote_date + 30 days
    order_discount_percent: Decimal = Decimal(0)
    backorder_preference: str | None = None  # default: the customer's
    warehouse_code: str | None = None  # default: the warehouse of the customer's branch, else the first
    note: str = ""


@dataclass(frozen=True)
class _PricedLine:
    product: Product
    data: QuoteLineInput
    quantity: Decimal
    list_price: Decimal
    unit_price: Decimal
    rule_id: int | None
    tax_rate: Decimal
    unit_cost: Decimal
    amounts: rules.LineAmounts
    agreed_price: Decimal


def get_order(session: Session, number: str, *, lock: bool = False) -> SalesOrder:
    stmt = select(SalesOrder).where(SalesOrder.number == number).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    order = session.execute(stmt).scalar_one_or_none()
    if order is None:
        raise OrderNotFound(number)
    return order


def _lines(session: Session, order: SalesOrder) -> list[SalesOrderLine]:
    return list(
        session.execute(
            select(SalesOrderLine)
            .where(SalesOrderLine.order_id == order.id)
            .order_by(SalesOrderLine.line_no)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def _percent(value, field: str, *, allow_100: bool = False) -> Decimal:
    try:
        pct = Decimal(str(value))
    except Exception:
        raise OrderInputError(field, "must be a number") from None
    if not pct.is_finite() or pct < 0 or pct > 100 or (pct == 100 and not allow_100):
        raise OrderInputError(field, "must be a percentage from 0 up to (not including) 100")
    return pct


def _preference(value: str | None, field: str) -> BackorderPreference | None:
    if value is None:
        return None
    try:
        return BackorderPreference(value)
    except ValueError:
        allowed = ", ".join(p.value for p in BackorderPreference)
        raise OrderInputError(field, f"unknown backorder preference {value!r}; use one of {allowed}") from None


def _customer(session: Session, code: str, *, active_only: bool = True) -> Customer:
    code = (code or "").strip()
    if not code:
        raise OrderInputError("customer_code", "a customer code is required")
    customer = session.scalars(select(Customer).where(Customer.code == code)).first()
    if customer is None:
        raise OrderInputError("customer_code", f"no customer with code {code!r}")
    if active_only and not customer.active:
        raise OrderInputError("customer_code", f"customer {code} is inactive")
    return customer


def _check_customer_ref(session: Session, customer: Customer, ref: str | None, *, own_id: int | None = None) -> None:
    if ref is None:
        return
    if len(ref) > 60:
        raise OrderInputError("customer_ref", "must be at most 60 characters")
    stmt = select(SalesOrder.number).where(SalesOrder.customer_id == customer.id, SalesOrder.customer_ref == ref)
    if own_id is not None:
        stmt = stmt.where(SalesOrder.id != own_id)
    existing = session.scalars(stmt).first()
    if existing is not None:
        raise DuplicateCustomerRef(customer.code, ref, existing)


def _category_path(session: Session, category_id: int | None, parents: dict | None = None) -> tuple[int, ...]:
    """The category and its ancestors, nearest first. `parents`: category id -> parent id already read in this
    call (the lines of one quote mostly share their upper categories)."""
    parents = {} if parents is None else parents
    path: list[int] = []
    while category_id is not None and category_id not in path and len(path) < 20:
        path.append(category_id)
        if category_id not in parents:
            parents[category_id] = session.scalar(
                select(ProductCategory.parent_id).where(ProductCategory.id == category_id))
        category_id = parents[category_id]
    return tuple(path)


def _price_rules(session: Session, pricelist_id: int | None) -> list[rules.PriceRule]:
    if pricelist_id is None:
        return []
    rows = session.scalars(select(PricelistRule).where(PricelistRule.pricelist_id == pricelist_id)).all()

    def dec(v):
        return None if v is None else Decimal(str(v))

    return [
        rules.PriceRule(
            id=r.id, kind=str(r.kind.value if hasattr(r.kind, "value") else r.kind), product_id=r.product_id,
            category_id=r.category_id, min_quantity=Decimal(str(r.min_quantity or 0)), date_start=r.date_start,
            date_end=r.date_end, fixed_price=dec(r.fixed_price), percent_discount=dec(r.percent_discount),
            base=r.base, price_round=dec(r.price_round), price_surcharge=dec(r.price_surcharge),
            min_margin_percent=dec(r.min_margin_percent), max_margin_percent=dec(r.max_margin_percent),
        )
        for r in rows
    ]


def _manual_price(value, field: str) -> Decimal:
    try:
        unit_price = Decimal(str(value))
    except Exception:
        raise OrderInputError(field, "must be a number") from None
    if not unit_price.is_finite() or unit_price < 0 or money(unit_price) != unit_price:
        raise OrderInputError(field, "must be zero or positive, in cents")
    if unit_price > MAX_AMOUNT:
        raise OrderInputError(field, f"must be at most {MAX_AMOUNT:,}")
    return unit_price


def _price_lines(
    session: Session, lines: tuple[QuoteLineInput, ...] | list[QuoteLineInput], *, pricelist_id: int | None,
    order_discount: Decimal, today: date,
) -> list[_PricedLine]:
    if not lines:
        raise OrderInputError("lines", "a quote needs at least one line")
    price_rules = _price_rules(session, pricelist_id)
    priced = []
    parents: dict[int, int | None] = {}  # category parents, read once per call
    tax_rates: dict[int, Decimal] = {}
    for i, line in enumerate(lines):
        sku = (line.sku or "").strip()
        product = session.scalars(select(Product).where(Product.sku == sku)).first() if sku else None
        if product is None:
            raise OrderInputError(f"lines[{i}].sku", f"no product with SKU {line.sku!r}")
        if not product.active:
            raise OrderInputError(f"lines[{i}].sku", f"product {sku} is no longer sold")
        try:
            quantity = qty(line.quantity)
        except Exception:
            raise OrderInputError(f"lines[{i}].quantity", "must be a number") from None
        if quantity <= 0 or quantity != Decimal(str(line.quantity)):
            raise OrderInputError(f"lines[{i}].quantity", "must be positive, with at most 3 decimals")
        if quantity > MAX_QUANTITY:
            raise OrderInputError(f"lines[{i}].quantity", f"must be at most {MAX_QUANTITY:,}")
        discount = _percent(line.discount_percent, f"lines[{i}].discount_percent", allow_100=True)
        list_price, cost = money(product.list_price), Decimal(str(product.standard_cost))
        # The pricelist's price is worked out even under a manual price: it is what the concession is measured on.
        rule = rules.select_price_rule(
            price_rules, product_id=product.id, category_path=_category_path(session, product.category_id, parents),
            quantity=quantity, on=today,
        )
        agreed_price = rules.rule_price(rule, list_price=list_price, cost=cost)
        if line.unit_price is not None:
            unit_price = _manual_price(line.unit_price, f"lines[{i}].unit_price")
            rule_id = None
        else:
            unit_price = agreed_price
            rule_id = rule.id if rule is not None else None
        tax_rate = ZERO
        if product.tax_id is not None:
            if product.tax_id not in tax_rates:
                rate = session.scalar(select(Tax.rate).where(Tax.id == product.tax_id))
                tax_rates[product.tax_id] = Decimal(str(rate))
            tax_rate = tax_rates[product.tax_id]
        amounts = rules.line_amounts(
            quantity=quantity, unit_price=unit_price, list_price=list_price, line_discount_percent=discount,
            order_discount_percent=order_discount, tax_rate=tax_rate, unit_cost=cost,
        )
        if amounts.subtotal > MAX_AMOUNT or amounts.list_amount > MAX_AMOUNT:
            raise OrderInputError(f"lines[{i}].quantity", f"the line amount would exceed {MAX_AMOUNT:,}")
        priced.append(_PricedLine(product, line, quantity, list_price, unit_price, rule_id, tax_rate, cost, amounts,
                                  agreed_price))
    return priced


def _line_promise(session: Session, product_id: int, quantity: Decimal, warehouse_id: int, today: date) -> date:
    # What the warehouse holds unreserved and the shortest supplier lead time, in one statement.
    on_hand, reserved, lead = session.execute(
        select(func.coalesce(func.sum(Quant.quantity), 0), func.coalesce(func.sum(Quant.reserved), 0),
               select(func.min(SupplierOffer.lead_time_days)).where(SupplierOffer.product_id == product_id)
               .scalar_subquery())
        .select_from(Quant)
        .join(Location, Location.id == Quant.location_id)
        .where(Quant.product_id == product_id, Location.warehouse_id == warehouse_id,
               Location.usage == LocationUsage.internal)
    ).one()
    # Purchase orders do not exist yet (procure-to-pay comes later), so no incoming receipts are known.
    return rules.promised_date(
        today, requested=quantity, available_now=qty(on_hand) - qty(reserved), incoming=(), supplier_lead_days=lead,
    )


def _shipping_policy(preference: str) -> str:
    # Odoo picking_policy (b4): shipping complete waits for the last line ("one"), otherwise as soon as possible.
    return rules.SHIPPING_ONE if preference == BackorderPreference.ship_complete else rules.SHIPPING_DIRECT


def _write_lines(session: Session, order: SalesOrder, priced: list[_PricedLine], today: date, *,
                 new: bool = False) -> None:
    """Replace the order's lines by the priced ones and recompute totals and the promised date. `new`: the order
    was just inserted and has no lines to replace."""
    if not new:
        for old in _lines(session, order):
            session.delete(old)
        session.flush()
    promises = []
    for no, p in enumerate(priced, 1):
        promise = None
        if not p.data.drop_ship:
            promise = _line_promise(session, p.product.id, p.quantity, order.warehouse_id, today)
            promises.append(promise)
        session.add(SalesOrderLine(
            order_id=order.id, line_no=no, product_id=p.product.id, description=p.product.name[:200],
            quantity=p.quantity, list_price=p.list_price, unit_price=p.unit_price, price_rule_id=p.rule_id,
            agreed_price=p.agreed_price,
            manual_price=p.data.unit_price is not None, discount_percent=Decimal(str(p.data.discount_percent)),
            unit_cost=p.unit_cost, tax_rate=p.tax_rate, subtotal=p.amounts.subtotal, tax_amount=p.amounts.tax,
            drop_ship=p.data.drop_ship, promised_date=promise,
        ))
    totals = rules.quote_totals([p.amounts for p in priced])
    order.list_total = totals.list_total
    order.amount_untaxed = totals.untaxed
    order.amount_tax = totals.tax
    order.amount_total = totals.total
    order.cost_total = totals.cost
    order.discount_percent = totals.discount_percent
    order.margin_percent = totals.margin_percent
    order.agreed_total = sum((money(p.quantity * p.agreed_price) for p in priced), ZERO)
    order.concession_percent = rules.concession_percent(order.agreed_total, totals.untaxed)
    order.promised_date = rules.order_promised_date(promises, _shipping_policy(order.backorder_preference))
    session.add(order)
    session.flush()


def _audit(session: Session, actor: str, action: str, number: str, reason: str = "", **data) -> None:
    # A Core INSERT, not session.add: an order's activities write about ten of these, never read back as objects,
    # and the ORM's unit of work cost more than the statement.
    session.execute(AuditEvent.__table__.insert().values(
        at=utcnow(), actor=actor, action=action, entity_kind="sales_order", entity_id=number, reason=reason[:500],
        data=data))


def _default_warehouse(session: Session, customer: Customer, code: str | None) -> Warehouse:
    if code:
        warehouse = session.scalars(select(Warehouse).where(Warehouse.code == code)).first()
        if warehouse is None:
            raise OrderInputError("warehouse_code", f"no warehouse with code {code!r}")
        return warehouse
    warehouse = None
    if customer.branch_id is not None:
        warehouse = session.scalars(
            select(Warehouse).where(Warehouse.branch_id == customer.branch_id).order_by(Warehouse.id)
        ).first()
    warehouse = warehouse or session.scalars(select(Warehouse).order_by(Warehouse.id)).first()
    if warehouse is None:
        raise OrderInputError("warehouse_code", "there is no warehouse to sell from")
    return warehouse


def create_quote(session: Session, draft: QuoteDraft, *, rep: str, today: date) -> SalesOrder:
    """A draft quote with every line priced from the customer's pricelist (or the price given by hand)."""
    customer = _customer(session, draft.customer_code)
    if draft.channel not in CHANNELS:
        raise OrderInputError("channel", f"unknown channel {draft.channel!r}; use one of {', '.join(CHANNELS)}")
    ref = draft.customer_ref.strip() if draft.customer_ref and draft.customer_ref.strip() else None
    _check_customer_ref(session, customer, ref)
    valid_until = draft.valid_until or today + timedelta(days=DEFAULT_VALIDITY_DAYS)
    if valid_until < today:
        raise OrderInputError("valid_until", "cannot be before the quote date")
    order_discount = _percent(draft.order_discount_percent, "order_discount_percent")
    preference = _preference(draft.backorder_preference, "backorder_preference") or customer.backorder_preference
    if len(draft.note) > 1000:
        raise OrderInputError("note", "must be at most 1000 characters")
    warehouse = _default_warehouse(session, customer, draft.warehouse_code)
    priced = _price_lines(session, draft.lines, pricelist_id=customer.pricelist_id, order_discount=order_discount,
                          today=today)
    term_days = DEFAULT_PAYMENT_TERM_DAYS
    if customer.payment_term_id is not None:
        term_days = session.scalar(select(PaymentTerm.days).where(PaymentTerm.id == customer.payment_term_id))

    number = next_number(session, "quote")
    order = SalesOrder(
        number=number, customer_id=customer.id, customer_ref=ref, channel=draft.channel, rep=rep,
        branch_id=customer.branch_id if customer.branch_id is not None else warehouse.branch_id,
        warehouse_id=warehouse.id, pricelist_id=customer.pricelist_id, payment_term_days=term_days,
        quote_date=today, valid_until=valid_until, order_discount_percent=order_discount,
        backorder_preference=BackorderPreference(preference), workflow_id=q2c_id(number), note=draft.note,
    )
    session.add(order)
    session.flush()
    _write_lines(session, order, priced, today, new=True)
    _audit(session, rep, "quote.created", number, channel=draft.channel, amount_total=str(order.amount_total))
    return order


def _same_lines(session: Session, current: list[SalesOrderLine], wanted: tuple[QuoteLineInput, ...]) -> bool:
    if len(current) != len(wanted):
        return False
    skus = dict(session.execute(
        select(Product.id, Product.sku).where(Product.id.in_([line.product_id for line in current]))
    ).all())
    for line, want in zip(current, wanted):
        try:
            same = (
                skus[line.product_id] == (want.sku or "").strip()
                and qty(line.quantity) == qty(want.quantity)
                and Decimal(str(line.discount_percent)) == Decimal(str(want.discount_percent))
                and bool(line.drop_ship) == bool(want.drop_ship)
                and (money(line.unit_price) if line.manual_price else None)
                == (None if want.unit_price is None else Decimal(str(want.unit_price)))
            )
        except Exception:  # unparsable input is certainly a change; the pricing step names the field
            return False
        if not same:
            return False
    return True


def edit_quote(session: Session, number: str, cmd: EditQuoteCommand, *, today: date) -> SalesOrder:
    """Apply the rep's edit, reprice every line at today's pricelist and bump the version. Allowed only in draft
    or changes_requested. An edit that changes nothing (a retried activity) returns the quote as it is."""
    order = get_order(session, number, lock=True)
    if order.status not in EDITABLE:
        raise OrderStateError(order.status, f"quote {number} is {order.status}: only a draft or a quote sent back "
                                            "for changes can be edited")
    current = _lines(session, order)
    customer = session.get(Customer, order.customer_id)
    ref = None
    if cmd.customer_ref is not None:
        ref = cmd.customer_ref.strip() or None
    order_discount = (Decimal(str(order.order_discount_percent)) if cmd.order_discount_percent is None
                      else _percent(cmd.order_discount_percent, "order_discount_percent"))
    preference = _preference(cmd.backorder_preference, "backorder_preference") or order.backorder_preference
    unchanged = (
        (cmd.lines is None or _same_lines(session, current, cmd.lines))
        and order_discount == Decimal(str(order.order_discount_percent))
        and (cmd.valid_until is None or cmd.valid_until == order.valid_until)
        and (cmd.customer_ref is None or ref == order.customer_ref)
        and preference == order.backorder_preference
    )
    if unchanged:
        return order
    if cmd.expected_version is not None and cmd.expected_version != order.version:
        raise StaleVersion(order.status, f"quote {number} was changed meanwhile (now version {order.version}, "
                                         f"your edit was of version {cmd.expected_version}): reload and edit again")
    if cmd.valid_until is not None:
        if cmd.valid_until < today:
            raise OrderInputError("valid_until", "cannot be in the past")
        order.valid_until = cmd.valid_until
    if cmd.customer_ref is not None:
        _check_customer_ref(session, customer, ref, own_id=order.id)
        order.customer_ref = ref
    if cmd.lines is not None:
        wanted = tuple(cmd.lines)
    else:
        # Keep the lines, reprice them: manual prices stay manual.
        skus = dict(session.execute(
            select(Product.id, Product.sku).where(Product.id.in_([line.product_id for line in current]))
        ).all())
        wanted = tuple(
            QuoteLineInput(sku=skus[line.product_id], quantity=qty(line.quantity),
                           discount_percent=Decimal(str(line.discount_percent)),
                           unit_price=money(line.unit_price) if line.manual_price else None,
                           drop_ship=line.drop_ship)
            for line in current
        )
    priced = _price_lines(session, wanted, pricelist_id=order.pricelist_id, order_discount=order_discount,
                          today=today)
    order.order_discount_percent = order_discount
    order.backorder_preference = BackorderPreference(preference)
    order.version += 1
    _write_lines(session, order, priced, today)
    _audit(session, cmd.actor.username, "quote.edited", number, version=order.version,
           amount_total=str(order.amount_total))
    return order


def _line_rows(session: Session, order: SalesOrder) -> list[tuple[SalesOrderLine, str, str, str | None]]:
    """(line, sku, invoice policy, category full name) per line in line order: one query for what the line states,
    the quote's categories and the invoice policies need."""
    rows = session.execute(
        select(SalesOrderLine, Product.sku, Product.invoice_policy, ProductCategory.full_name)
        .join(Product, Product.id == SalesOrderLine.product_id)
        .outerjoin(ProductCategory, ProductCategory.id == Product.category_id)
        .where(SalesOrderLine.order_id == order.id)
        .order_by(SalesOrderLine.line_no)
        .execution_options(populate_existing=True)
    ).all()
    return [(line, sku, str(policy.value if hasattr(policy, "value") else policy), category)
            for line, sku, policy, category in rows]


def _line_state(line: SalesOrderLine, sku: str, policy: str) -> QuoteLineState:
    return QuoteLineState(
        line_id=line.id, line_no=line.line_no, product_id=line.product_id, sku=sku, quantity=qty(line.quantity),
        unit_price=money(line.unit_price), subtotal=money(line.subtotal), drop_ship=line.drop_ship,
        qty_reserved=qty(line.qty_reserved), qty_delivered=qty(line.qty_delivered),
        qty_invoiced=qty(line.qty_invoiced), qty_cancelled=qty(line.qty_cancelled), invoice_policy=policy,
    )


def _line_states(session: Session, order: SalesOrder) -> tuple[QuoteLineState, ...]:
    return tuple(_line_state(line, sku, policy) for line, sku, policy, _ in _line_rows(session, order))


def quote_identity(session: Session, number: str) -> tuple[Decimal, str, str]:
    """(amount total, customer code, warehouse code) of a quote: what its process shows operators from its start."""
    total, customer_code, warehouse_code = session.execute(
        select(SalesOrder.amount_total, Customer.code, Warehouse.code)
        .join(Customer, Customer.id == SalesOrder.customer_id)
        .join(Warehouse, Warehouse.id == SalesOrder.warehouse_id)
        .where(SalesOrder.number == number)
    ).one()
    return money(total), customer_code, warehouse_code


def quote_state(session: Session, number: str, *, order: SalesOrder | None = None) -> QuoteState:
    """The quote as the workflow holds it. `order`: the row the caller has just loaded (and locked or written)
    in this transaction, so it is not read again."""
    order = order if order is not None else get_order(session, number)
    # The customer, branch and warehouse in one statement; the lines with their skus and categories in another.
    customer_code, segment, name, branch, warehouse_code = session.execute(
        select(
            Customer.code, Customer.segment, Customer.name,
            select(Branch.code).where(Branch.id == order.branch_id).scalar_subquery(),
            select(Warehouse.code).where(Warehouse.id == order.warehouse_id).scalar_subquery(),
        ).where(Customer.id == order.customer_id)
    ).one()
    rows = _line_rows(session, order)
    categories = {category for *_, category in rows if category is not None}
    return QuoteState(
        quote_number=order.number, order_id=order.id, customer_id=order.customer_id, customer_code=customer_code,
        customer_segment=segment, branch=(branch if order.branch_id else "") or "", warehouse_id=order.warehouse_id,
        status=str(order.status), valid_until=order.valid_until,
        backorder_preference=str(BackorderPreference(order.backorder_preference).value),
        amount_untaxed=money(order.amount_untaxed), amount_total=money(order.amount_total),
        discount_percent=Decimal(str(order.discount_percent)), margin_percent=Decimal(str(order.margin_percent)),
        categories=tuple(sorted(categories)),
        lines=tuple(_line_state(line, sku, policy) for line, sku, policy, _ in rows), version=order.version,
        warehouse_code=warehouse_code or "",
        concession_percent=Decimal(str(order.concession_percent)),
        customer_name=name,
    )


def set_status(session: Session, number: str, status: str, *, actor: str, reason: str = "",
               order: SalesOrder | None = None) -> SalesOrder:
    """Record the status the workflow moved the order to (with an audit event). Setting the status it already
    has changes nothing; a finished order (done, rejected, expired, cancelled) does not move any more.
    `order`: the row as this transaction already locked it (not read again)."""
    try:
        new = OrderStatus(status)
    except ValueError:
        raise OrderInputError("status", f"unknown order status {status!r}") from None
    if order is None:
        order = get_order(session, number, lock=True)
    old = OrderStatus(order.status)
    if old == new:
        return order
    if old in TERMINAL:
        raise OrderStateError(old, f"order {number} is {old} and cannot become {new}")
    now = utcnow()
    if old == OrderStatus.sent and new in ACCEPTED and order.accepted_at is None:
        order.accepted_at, order.accepted_by = now, actor
    if new == OrderStatus.confirmed and order.confirmed_at is None:
        order.confirmed_at = now
    if new in TERMINAL:
        order.closed_at = now
    if new in (OrderStatus.rejected, OrderStatus.cancelled) and reason:
        order.cancel_reason = reason[:500]
    order.status = new
    session.add(order)
    _audit(session, actor, "order.status", number, reason, old=str(old), new=str(new))
    session.flush()
    return order


# ------------------------------------------------------------------------------------------------- credit


def posted_receivable(session: Session, customer_id: int) -> Decimal:
    """Σ(debit − credit) of the customer's lines on receivable accounts: what the ledger says they owe."""
    row = session.execute(
        select(func.coalesce(func.sum(JournalLine.debit), 0), func.coalesce(func.sum(JournalLine.credit), 0))
        .join(Account, Account.id == JournalLine.account_id)
        .where(JournalLine.customer_id == customer_id, Account.type == AccountType.receivable)
    ).one()
    return money(row[0]) - money(row[1])


def uninvoiced_orders(session: Session, customer_id: int, *, exclude_order_id: int | None = None) -> Decimal:
    """What the customer's other accepted orders still add to exposure: each one's total less what is invoiced."""
    stmt = select(SalesOrder.amount_total, SalesOrder.amount_invoiced).where(
        SalesOrder.customer_id == customer_id, SalesOrder.status.in_(OPEN_EXPOSURE))
    if exclude_order_id is not None:
        stmt = stmt.where(SalesOrder.id != exclude_order_id)
    return sum((rules.uninvoiced_amount(money(t), money(i)) for t, i in session.execute(stmt)), ZERO)


def credit_check(session: Session, number: str, *, order: SalesOrder | None = None) -> CreditCheckResult:
    """ERPNext's blocking exposure (erp-anchors b5): posted receivable + other accepted orders not yet invoiced
    + this order (less what of it is invoiced already: that part is in the receivable). `order`: the row this
    transaction already read."""
    if order is None:
        order = get_order(session, number)
    customer_id = order.customer_id
    uninvoiced = uninvoiced_orders(session, customer_id, exclude_order_id=order.id)
    this_order = rules.uninvoiced_amount(money(order.amount_total), money(order.amount_invoiced))
    credit_limit = session.scalar(select(Customer.credit_limit).where(Customer.id == customer_id))
    posted = posted_receivable(session, customer_id)
    decision = rules.credit_check(posted_receivable=posted, uninvoiced_orders=uninvoiced, this_order=this_order,
                                  limit=money(credit_limit))
    return CreditCheckResult(customer_id=customer_id, posted_receivable=posted, uninvoiced_orders=uninvoiced,
                             this_order=this_order, exposure=decision.exposure, limit=decision.limit,
                             over_limit=decision.over_limit)


# ------------------------------------------------------------------------------------------------- stock


def demand_key(number: str, line_no: int) -> str:
    return f"{number}/L{line_no}"


def _outstanding(line: SalesOrderLine) -> Decimal:
    return qty(line.quantity) - qty(line.qty_delivered) - qty(line.qty_cancelled)


def _held(session: Session, key: str) -> Decimal:
    held = session.scalar(select(ReservationDemand.reserved).where(ReservationDemand.demand_key == key)
                          .execution_options(populate_existing=True))
    return qty(held) if held is not None else ZERO


def reserve_order(session: Session, number: str, *, order: SalesOrder | None = None) -> ReserveOrderResult:
    """Reserve every stock line's outstanding quantity (ordered − delivered − cancelled) in the order's warehouse;
    a repeat tops up from stock that arrived meanwhile and never reserves twice (demand key per line).
    `order`: the row as this transaction already locked it."""
    if order is None:
        order = get_order(session, number, lock=True)
    if order.status in TERMINAL:
        raise OrderStateError(order.status, f"order {number} is {order.status}: nothing to reserve")
    shortfall = ZERO
    short_lines: list[purchasing.Shortfall] = []
    rows = _line_rows(session, order)
    for line, *_ in rows:
        if line.drop_ship:
            continue
        want = _outstanding(line)
        if want > 0:
            # known: the line's product and the order's warehouse exist (foreign keys).
            result = inventory.reserve(session, demand_key=demand_key(number, line.line_no), known=True,
                                       product_id=line.product_id, warehouse_id=order.warehouse_id, quantity=want)
            line.qty_reserved = result.reserved
            # Not result.shortfall: the demand remembers the largest quantity ever requested, which still
            # counts units delivered since; what is short now is the outstanding quantity less what is held.
            short = max(want - result.reserved, ZERO)
            if short > 0:
                short_lines.append(purchasing.Shortfall(demand_key(number, line.line_no), line.product_id, short))
            shortfall += short
        else:
            line.qty_reserved = ZERO
        session.add(line)
    session.flush()
    # Replenishment: what is short goes on the main suppliers' open requests for quotation (after every line is
    # reserved: purchasing's locks come after the stock locks).
    purchasing.replenish_shortfalls(session, short_lines, warehouse_id=order.warehouse_id, origin=number)
    # The lines as just written (the rows read above, updated in place): no second read.
    lines = tuple(_line_state(line, sku, policy) for line, sku, policy, _ in rows)
    return ReserveOrderResult(lines=lines, fully_reserved=shortfall == 0, shortfall=shortfall)


def _shipment_state(session: Session, shipment: Shipment, number: str,
                    rows: list[tuple[ShipmentLine, str]] | None = None) -> ShipmentState:
    """`rows`: (shipment line, sku) in line order, when the caller has them in hand."""
    if rows is None:
        rows = session.execute(
            select(ShipmentLine, Product.sku)
            .join(Product, Product.id == ShipmentLine.product_id)
            .where(ShipmentLine.shipment_id == shipment.id)
            .order_by(ShipmentLine.id)
        ).all()
    return ShipmentState(
        shipment_number=shipment.number, quote_number=number, seq=shipment.seq, status=str(shipment.status),
        promised_date=shipment.promised_date, drop_ship=shipment.drop_ship,
        lines=tuple(ShipmentLineState(sl.order_line_id, sl.product_id, sku, qty(sl.quantity)) for sl, sku in rows),
    )


def _in_open_shipments(session: Session, order: SalesOrder) -> dict[int, Decimal]:
    rows = session.execute(
        select(ShipmentLine.order_line_id, func.sum(ShipmentLine.quantity))
        .join(Shipment, Shipment.id == ShipmentLine.shipment_id)
        .where(Shipment.order_id == order.id, Shipment.status.in_(OPEN_SHIPMENT))
        .group_by(ShipmentLine.order_line_id)
    ).all()
    return {line_id: qty(total) for line_id, total in rows}


def shipment_number(number: str, seq: int) -> str:
    return f"SHP-{number}-{seq}"


def create_shipment(session: Session, number: str, seq: int, *, today: date) -> ShipmentState | None:
    """Shipment `seq` of the order: everything reserved and not yet in an open shipment. When no stock is waiting,
    the drop-ship lines not yet in a shipment become a drop-ship shipment (the supplier delivers). None when there
    is nothing to ship. Idempotent by (order, seq): a repeat returns the shipment made the first time."""
    order = get_order(session, number, lock=True)
    existing = session.scalars(select(Shipment).where(Shipment.order_id == order.id, Shipment.seq == seq)).first()
    if existing is not None:
        return _shipment_state(session, existing, number)
    if order.status in TERMINAL:
        raise OrderStateError(order.status, f"order {number} is {order.status}: nothing may ship")
    if seq < 1:
        raise OrderInputError("seq", "shipment sequence numbers start at 1")
    line_rows = _line_rows(session, order)
    lines = [line for line, *_ in line_rows]
    skus = {line.id: sku for line, sku, *_ in line_rows}
    pending = _in_open_shipments(session, order)
    # What each stock line's demand holds, in one query.
    keys = {demand_key(number, line.line_no): line for line in lines if not line.drop_ship}
    held = dict(session.execute(
        select(ReservationDemand.demand_key, ReservationDemand.reserved)
        .where(ReservationDemand.demand_key.in_(list(keys)))
    ).all()) if keys else {}
    picks: list[tuple[SalesOrderLine, Decimal]] = []
    for key, line in keys.items():
        free = (qty(held[key]) if held.get(key) is not None else ZERO) - pending.get(line.id, ZERO)
        if free > 0:
            picks.append((line, free))
    drop_ship = False
    if not picks:
        for line in lines:
            if line.drop_ship:
                free = _outstanding(line) - pending.get(line.id, ZERO)
                if free > 0:
                    picks.append((line, free))
        drop_ship = bool(picks)
    if not picks:
        return None
    dates = [line.promised_date for line, _ in picks if line.promised_date is not None]
    shipment = Shipment(number=shipment_number(number, seq), order_id=order.id, seq=seq, drop_ship=drop_ship,
                        promised_date=min(dates) if dates else order.promised_date or today)
    session.add(shipment)
    session.flush()
    made = [ShipmentLine(shipment_id=shipment.id, order_line_id=line.id, product_id=line.product_id,
                         quantity=amount) for line, amount in picks]
    session.add_all(made)
    session.flush()
    if drop_ship:  # the supplier delivers: order it from them, to the customer, in this same transaction
        purchasing.order_drop_ship(session, shipment, order, picks, today=today)
    return _shipment_state(session, shipment, number, [(sl, skus[sl.order_line_id]) for sl in made])


def _locations(session: Session, warehouse_id: int) -> tuple[Location, Location]:
    """(the warehouse's main stock location, the customers' location), in one query: the warehouse's internal
    locations and the customer locations, shortest path first (the main one, not a bin)."""
    rows = session.scalars(
        select(Location)
        .where(((Location.warehouse_id == warehouse_id) & (Location.usage == LocationUsage.internal))
               | (Location.usage == LocationUsage.customer))
        .order_by(func.length(Location.path), Location.id)
    ).all()
    internal = [loc for loc in rows if loc.usage == LocationUsage.internal]
    customers = sorted((loc for loc in rows if loc.usage == LocationUsage.customer), key=lambda loc: loc.id)
    if not internal or not customers:
        raise inventory.StockError("the warehouse has no stock location or there is no customer location")
    return internal[0], customers[0]



def record_shipment_step(
    session: Session, shipment_number: str, step: str, *, actor: str, tracking_ref: str = ""
) -> ShipmentState:
    """Record picked, packed, shipped, in that order. Shipping posts the stock moves (stock → customers,
    consuming the line's reservation; Dr stock output / Cr stock valuation) and raises qty_delivered.
    Repeating a step already done returns the shipment unchanged."""
    try:
        wanted = ShipmentStatus(step)
    except ValueError:
        wanted = None
    if wanted not in SHIPMENT_STEPS:
        raise OrderInputError("step", f"unknown step {step!r}; use picked, packed or shipped")
    # The shipment (locked) and its order in one statement.
    found = session.execute(
        select(Shipment, SalesOrder).join(SalesOrder, SalesOrder.id == Shipment.order_id)
        .where(Shipment.number == shipment_number).with_for_update(of=Shipment)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if found is None:
        raise OrderInputError("shipment_number", f"no shipment {shipment_number!r}")
    shipment, order = found
    if shipment.status == ShipmentStatus.cancelled:
        raise OrderStateError(order.status, f"shipment {shipment_number} was cancelled")
    done = SHIPMENT_STEPS.index(shipment.status) if shipment.status in SHIPMENT_STEPS else -1
    target = SHIPMENT_STEPS.index(wanted)
    if target <= done:
        return _shipment_state(session, shipment, order.number)
    if target > done + 1:
        raise OrderStateError(order.status, f"shipment {shipment_number} must be {SHIPMENT_STEPS[done + 1]} "
                                            f"before it can be {wanted}")
    now = utcnow()
    shipped = None
    if wanted == ShipmentStatus.picked:
        shipment.picked_at = now
    elif wanted == ShipmentStatus.packed:
        shipment.packed_at = now
    else:
        shipped = _ship(session, shipment, order, now.date())
        shipment.shipped_at, shipment.shipped_by = now, actor
        if tracking_ref:
            shipment.tracking_ref = tracking_ref[:60]
    shipment.status = wanted
    session.add(shipment)
    _audit(session, actor, f"shipment.{wanted}", order.number, shipment=shipment_number)
    session.flush()
    return _shipment_state(session, shipment, order.number, shipped)


def _ship(session: Session, shipment: Shipment, order: SalesOrder, today: date) -> list[tuple[ShipmentLine, str]]:
    """Post the shipment's moves and raise its lines' delivered quantities; returns (shipment line, sku) rows
    for the shipment's state. The locations and products read here stay referenced for the whole loop, so
    post_move's lookups of them by id are answered by the session, not the database."""
    stock = customers = None
    if not shipment.drop_ship:
        stock, customers = _locations(session, order.warehouse_id)
    codes = _Codes(session)
    rows = session.execute(
        select(ShipmentLine, SalesOrderLine, Product)
        .join(SalesOrderLine, SalesOrderLine.id == ShipmentLine.order_line_id)
        .join(Product, Product.id == ShipmentLine.product_id)
        .where(ShipmentLine.shipment_id == shipment.id)
        .order_by(ShipmentLine.id)
        .execution_options(populate_existing=True)
    ).all()
    for sl, line, _product in rows:
        if not shipment.drop_ship:
            moved = inventory.post_move(session, inventory.MoveRequest(
                key=f"{shipment.number}/{line.id}", product_id=line.product_id, quantity=qty(sl.quantity),
                source_location_id=stock.id, dest_location_id=customers.id,
                demand_key=demand_key(order.number, line.line_no), move_date=today, customer_id=order.customer_id,
            ), account_memo=codes.categories)
            sl.move_id, held = moved.move_id, moved.demand_reserved
            session.add(sl)
        else:  # the supplier delivered: receive the drop-ship purchase and value the delivery at its price
            sl.move_id = purchasing.receive_drop_ship(session, shipment, sl, order, today, codes.categories)
            session.add(sl)
            held = None
        delivered_before = qty(line.qty_delivered)
        line.qty_delivered = delivered_before + qty(sl.quantity)
        # What the demand still holds: as post_move left it, or (a retried move, a drop-ship line) read without
        # flushing first, so the line is written once with both quantities.
        if held is None:
            with session.no_autoflush:
                held = _held(session, demand_key(order.number, line.line_no))
        line.qty_reserved = held
        session.add(line)
        session.flush()
        _catch_up_cogs(session, order, line, delivered_before, today, shipment.number, codes)
    return [(sl, product.sku) for sl, _line, product in rows]


# ------------------------------------------------------------------------------------------------- invoices


class _Codes:
    """Account codes one posting call needs, each read once: a category's accounts (nearest up its path, all
    three in one walk) and a tax's account. Lives for one call only, so it never outlives a change of the chart."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.categories: dict[int | None, dict[str, str]] = {}  # inventory.category_accounts' memo
        self._taxes: dict[int, str] = {}

    def category(self, category_id: int | None, attr: str, default: str) -> str:
        return inventory.category_accounts(self.session, category_id, self.categories).get(attr) or default

    def tax(self, product: Product) -> str:
        if product.tax_id is None:
            return "2200"
        if product.tax_id not in self._taxes:
            self._taxes[product.tax_id] = _tax_account(self.session, product)
        return self._taxes[product.tax_id]


def _category_account(session: Session, category_id: int | None, attr: str, default: str,
                      codes: _Codes | None = None) -> str:
    return (codes or _Codes(session)).category(category_id, attr, default)


def _cost_due(session: Session, line: SalesOrderLine, invoiced: Decimal) -> Decimal:
    """COGS still to recognise for `invoiced` units of the line: the value of the delivered moves for the units
    both delivered and invoiced (Anglo-Saxon, b10: cost is recognised when revenue is, at what the delivery cost),
    less the cost its invoices (net of credit notes) recognised already. One statement."""
    moved_qty, moved_value, recognised = session.execute(
        select(
            func.coalesce(func.sum(StockMove.quantity), 0), func.coalesce(func.sum(StockMove.value), 0),
            select(func.coalesce(func.sum(case((CustomerInvoice.kind == "invoice", CustomerInvoiceLine.cost_amount),
                                               else_=-CustomerInvoiceLine.cost_amount)), 0))
            .join(CustomerInvoice, CustomerInvoice.id == CustomerInvoiceLine.invoice_id)
            .where(CustomerInvoiceLine.order_line_id == line.id)
            .scalar_subquery(),
        )
        .select_from(StockMove)
        .join(ShipmentLine, ShipmentLine.move_id == StockMove.id)
        .where(ShipmentLine.order_line_id == line.id)
    ).one()
    return _covered_cost(qty(moved_qty), money(moved_value), invoiced) - money(recognised)


def _covered_cost(moved_qty: Decimal, moved_value: Decimal, invoiced: Decimal) -> Decimal:
    covered = min(invoiced, moved_qty)
    if covered <= 0:
        return ZERO
    if covered >= moved_qty:
        return moved_value
    return money(moved_value * covered / moved_qty)


def _cogs_lines(session: Session, product: Product, amount: Decimal, customer_id: int,
                codes: _Codes | None = None) -> list[LineSpec]:
    if amount == 0:
        return []
    codes = codes or _Codes(session)
    cogs = codes.category(product.category_id, "expense_account_id", COGS_ACCOUNT)
    output = codes.category(product.category_id, "stock_output_account_id", STOCK_OUTPUT_ACCOUNT)
    if amount > 0:
        return [LineSpec(cogs, debit=amount, label=product.sku, customer_id=customer_id),
                LineSpec(output, credit=amount, label=product.sku, customer_id=customer_id)]
    return [LineSpec(output, debit=-amount, label=product.sku, customer_id=customer_id),
            LineSpec(cogs, credit=-amount, label=product.sku, customer_id=customer_id)]


def _catch_up_cogs(session: Session, order: SalesOrder, line: SalesOrderLine, delivered_before: Decimal,
                   today: date, shipment_no: str, codes: _Codes | None = None) -> None:
    """Units invoiced before they shipped (ordered policy) had no delivery value yet: once they ship, move their
    cost out of the interim account, and add it to the latest invoice line so recognised cost stays one sum."""
    if qty(line.qty_invoiced) <= delivered_before:
        return
    amount = _cost_due(session, line, qty(line.qty_invoiced))
    if amount == 0:
        return
    latest = session.execute(
        select(CustomerInvoiceLine)
        .join(CustomerInvoice, CustomerInvoice.id == CustomerInvoiceLine.invoice_id)
        .where(CustomerInvoiceLine.order_line_id == line.id, CustomerInvoice.kind == "invoice")
        .order_by(CustomerInvoiceLine.id.desc())
    ).scalars().first()
    product = session.get(Product, line.product_id)
    post_entry(session, source_key=f"cogs:{shipment_no}/{line.id}", entry_date=today, journal="stock",
               memo=f"Cost of {product.sku} invoiced before delivery ({order.number})",
               lines=_cogs_lines(session, product, amount, order.customer_id, codes))
    latest.cost_amount = money(latest.cost_amount) + amount
    session.add(latest)
    session.flush()


def _invoice_state(invoice: CustomerInvoice | None) -> InvoiceState:
    if invoice is None:
        return InvoiceState(None, ZERO, None, None)
    return InvoiceState(invoice.number, money(invoice.amount_total), invoice.due_date, invoice.journal_entry_id)


def _net_invoiced(session: Session, line_id: int) -> tuple[Decimal, Decimal]:
    """(subtotal, tax) invoiced so far on the line, less credit notes."""
    rows = session.execute(
        select(CustomerInvoice.kind, func.coalesce(func.sum(CustomerInvoiceLine.subtotal), 0),
               func.coalesce(func.sum(CustomerInvoiceLine.tax_amount), 0))
        .join(CustomerInvoice, CustomerInvoice.id == CustomerInvoiceLine.invoice_id)
        .where(CustomerInvoiceLine.order_line_id == line_id)
        .group_by(CustomerInvoice.kind)
    ).all()
    sub = tax = ZERO
    for kind, s, t in rows:
        sign = 1 if kind == "invoice" else -1
        sub += sign * money(s)
        tax += sign * money(t)
    return sub, tax


def _piece_amounts(session: Session, order: SalesOrder, line: SalesOrderLine, amount: Decimal,
                   *, completes: bool) -> tuple[Decimal, Decimal]:
    """Subtotal and tax of `amount` units of the line; the piece that completes the line takes what is left of
    the quoted amounts, so the pieces always add up to the quote to the cent."""
    if completes:
        sub, tax = _net_invoiced(session, line.id)
        return money(line.subtotal) - sub, money(line.tax_amount) - tax
    a = rules.line_amounts(quantity=amount, unit_price=money(line.unit_price), list_price=money(line.list_price),
                           line_discount_percent=Decimal(str(line.discount_percent)),
                           order_discount_percent=Decimal(str(order.order_discount_percent)),
                           tax_rate=Decimal(str(line.tax_rate)), unit_cost=Decimal(str(line.unit_cost)))
    return a.subtotal, a.tax


def _tax_account(session: Session, product: Product) -> str:
    if product.tax_id is None:
        return "2200"
    return session.scalar(select(Account.code).join(Tax, Tax.account_id == Account.id).where(Tax.id == product.tax_id))


def invoice_order(session: Session, number: str, key: str, *, today: date,
                  order: SalesOrder | None = None) -> InvoiceState:
    """Invoice what each line's invoice policy allows now (ordered: ordered − cancelled − invoiced; delivered:
    delivered − invoiced). Journal: Dr receivable (customer) / Cr income, Cr output tax; and Dr COGS / Cr stock
    output at the delivered moves' value. The same key returns the invoice written the first time.
    `order`: the row as this transaction already locked it."""
    if not key or len(key) > 80:
        raise OrderInputError("key", "an invoice key of 1 to 80 characters is required")
    # Lock the order before looking for the key: two attempts with one key queue here, and the second then
    # finds the first one's invoice instead of failing on the unique key.
    if order is None:
        order = get_order(session, number, lock=True)
    existing = session.scalars(select(CustomerInvoice).where(CustomerInvoice.key == key)).first()
    if existing is not None:
        return _invoice_state(existing)
    if order.status not in INVOICEABLE:
        raise OrderStateError(order.status, f"order {number} is {order.status}: only a confirmed or delivered "
                                            "order is invoiced")
    pieces = []
    codes = _Codes(session)
    # Lines and their products in one query (the products stay referenced here, so later lookups by id hit the
    # session instead of the database).
    for line, product in session.execute(
        select(SalesOrderLine, Product)
        .join(Product, Product.id == SalesOrderLine.product_id)
        .where(SalesOrderLine.order_id == order.id)
        .order_by(SalesOrderLine.line_no)
        .execution_options(populate_existing=True)
    ).all():
        policy = str(product.invoice_policy.value if hasattr(product.invoice_policy, "value")
                     else product.invoice_policy)
        amount = rules.invoiceable_quantity(policy=policy, ordered=qty(line.quantity),
                                            delivered=qty(line.qty_delivered), invoiced=qty(line.qty_invoiced),
                                            cancelled=qty(line.qty_cancelled))
        if amount > 0:
            completes = qty(line.qty_invoiced) + amount == qty(line.quantity)
            pieces.append((line, product, amount, *_piece_amounts(session, order, line, amount, completes=completes)))
    if not pieces:
        return InvoiceState(None, ZERO, None, None)

    invoice_no = next_number(session, "invoice")
    untaxed = sum((p[3] for p in pieces), ZERO)
    tax = sum((p[4] for p in pieces), ZERO)
    invoice = CustomerInvoice(key=key, number=invoice_no, kind="invoice", order_id=order.id,
                              customer_id=order.customer_id, invoice_date=today,
                              due_date=today + timedelta(days=order.payment_term_days), amount_untaxed=untaxed,
                              amount_tax=tax, amount_total=untaxed + tax, amount_residual=untaxed + tax)
    session.add(invoice)
    session.flush()
    income: dict[str, Decimal] = defaultdict(lambda: ZERO)
    taxes: dict[str, Decimal] = defaultdict(lambda: ZERO)
    cogs: list[LineSpec] = []
    for line, product, amount, sub, tx in pieces:
        line.qty_invoiced = qty(line.qty_invoiced) + amount
        session.add(line)
        cost = _cost_due(session, line, qty(line.qty_invoiced))
        session.add(CustomerInvoiceLine(invoice_id=invoice.id, order_line_id=line.id, product_id=product.id,
                                        quantity=amount, unit_price=money(line.unit_price), subtotal=sub,
                                        tax_amount=tx, cost_amount=cost))
        income[codes.category(product.category_id, "income_account_id", INCOME_ACCOUNT)] += sub
        if tx:
            taxes[codes.tax(product)] += tx
        cogs += _cogs_lines(session, product, cost, order.customer_id, codes)
    session.flush()
    entry = post_entry(
        session, source_key=key, entry_date=today, journal="sales", memo=f"Invoice {invoice_no} for {number}",
        lines=[
            LineSpec(RECEIVABLE_ACCOUNT, debit=invoice.amount_total, label=invoice_no, customer_id=order.customer_id),
            *(LineSpec(code, credit=v, label=invoice_no, customer_id=order.customer_id) for code, v in income.items()),
            *(LineSpec(code, credit=v, label=invoice_no, customer_id=order.customer_id) for code, v in taxes.items()),
            *cogs,
        ],
    )
    invoice.journal_entry_id = entry.id
    order.amount_invoiced = money(order.amount_invoiced) + invoice.amount_total
    session.add_all([invoice, order])
    _audit(session, "system", "invoice.posted", number, invoice=invoice_no, amount_total=str(invoice.amount_total))
    session.flush()
    return _invoice_state(invoice)


# ------------------------------------------------------------------------------------------------- payments


def _settle(invoice: CustomerInvoice, amount: Decimal) -> None:
    invoice.amount_residual = money(invoice.amount_residual) - amount
    invoice.status = "paid" if invoice.amount_residual == 0 else "partial"


def _payment_quotes(session: Session, payment: CustomerPayment, paid: set[str] | None = None) -> list[str]:
    """Orders whose workflows hear of the payment: the customer's orders on credit hold (the payment may release
    them) and the orders of the invoices it paid: `paid` when the caller has just allocated it, else read back
    from the entry's lines (labelled by invoice)."""
    numbers = set(session.scalars(
        select(SalesOrder.number).where(SalesOrder.customer_id == payment.customer_id,
                                        SalesOrder.status == OrderStatus.credit_hold)
    ))
    if paid is not None:
        return sorted(numbers | paid)
    touched = set(session.scalars(
        select(JournalLine.label).where(JournalLine.entry_id == payment.journal_entry_id, JournalLine.credit > 0)
    ))
    if touched:
        numbers |= set(session.scalars(
            select(SalesOrder.number).join(CustomerInvoice, CustomerInvoice.order_id == SalesOrder.id)
            .where(CustomerInvoice.number.in_(touched))
        ))
    return sorted(numbers)


def record_payment(
    session: Session, *, reference: str, customer_code: str, amount: Decimal, payment_date: date,
    recorded_by: str, invoice_number: str | None = None,
) -> tuple[CustomerPayment, list[str]]:
    """Record money received: Dr bank / Cr receivable (customer), allocated to the named invoice first, then to the
    oldest open invoices; what is left stays on account (a receivable credit line labelled "unallocated").
    Idempotent by bank reference: the same reference and amount return the same payment; another amount is
    refused. Returns the payment and the quote numbers whose workflows to signal."""
    reference = (reference or "").strip()
    if not reference or len(reference) > 60:
        raise OrderInputError("reference", "a bank reference of 1 to 60 characters is required")
    # An inactive customer may still pay what they owe.
    customer = _customer(session, customer_code, active_only=False)
    # One payment of a customer at a time: a repeated import waits here and then finds the first one's row, and
    # two payments never allocate the same open invoice amount.
    session.execute(select(Customer.id).where(Customer.id == customer.id).with_for_update())
    try:
        amount = Decimal(str(amount))
    except Exception:
        raise OrderInputError("amount", "must be a number") from None
    if not amount.is_finite() or amount <= 0 or money(amount) != amount:
        raise OrderInputError("amount", "must be positive, in cents")
    if amount > MAX_AMOUNT:
        raise OrderInputError("amount", f"must be at most {MAX_AMOUNT:,}")
    existing = session.scalars(select(CustomerPayment).where(CustomerPayment.reference == reference)).first()
    if existing is not None:
        if money(existing.amount) != amount or existing.customer_id != customer.id:
            raise OrderInputError("reference", f"payment {reference} was already recorded with amount "
                                               f"{money(existing.amount)} for another booking; check the reference")
        return existing, _payment_quotes(session, existing)

    named = None
    if invoice_number:
        # Locked as the open invoices below are: its residual is what this payment settles.
        named = session.scalars(select(CustomerInvoice).where(CustomerInvoice.number == invoice_number)
                                .with_for_update()).first()
        if named is None or named.kind != "invoice":
            raise OrderInputError("invoice_number", f"no invoice {invoice_number!r}")
        if named.customer_id != customer.id:
            raise OrderInputError("invoice_number", f"invoice {invoice_number} is not an invoice of {customer.code}")
    if named is not None and amount <= money(named.amount_residual):
        # The named invoice takes it all (the usual case: a customer pays the invoice they name): the customer's
        # other open invoices are neither read nor locked.
        open_invoices = [named]
    else:
        open_invoices = list(session.execute(
            select(CustomerInvoice)
            .where(CustomerInvoice.customer_id == customer.id, CustomerInvoice.kind == "invoice",
                   CustomerInvoice.amount_residual > 0)
            .order_by(CustomerInvoice.invoice_date, CustomerInvoice.id)
            .with_for_update()
        ).scalars())
        if named is not None:
            open_invoices = [named] + [i for i in open_invoices if i.id != named.id]
    left = amount
    allocations: list[tuple[CustomerInvoice, Decimal]] = []
    for invoice in open_invoices:
        if left <= 0:
            break
        part = min(left, money(invoice.amount_residual))
        if part > 0:
            allocations.append((invoice, part))
            left -= part
    credit_lines = [LineSpec(RECEIVABLE_ACCOUNT, credit=part, label=inv.number, customer_id=customer.id)
                    for inv, part in allocations]
    if left > 0:
        credit_lines.append(LineSpec(RECEIVABLE_ACCOUNT, credit=left, label=UNALLOCATED, customer_id=customer.id))
    # The entry first, so the payment row is written once, already pointing at it.
    entry = post_entry(session, source_key=f"payment:{reference}", entry_date=payment_date, journal="bank",
                       memo=f"Payment {reference} from {customer.code}",
                       lines=[LineSpec(BANK_ACCOUNT, debit=amount, label=reference, customer_id=customer.id),
                              *credit_lines])
    payment = CustomerPayment(reference=reference, customer_id=customer.id, amount=amount, payment_date=payment_date,
                              recorded_by=recorded_by, invoice_id=allocations[0][0].id if allocations else None,
                              journal_entry_id=entry.id)
    session.add(payment)
    paid: set[str] = set()
    for invoice, part in allocations:
        _settle(invoice, part)
        order = session.get(SalesOrder, invoice.order_id)
        order.amount_paid = money(order.amount_paid) + part
        paid.add(order.number)
        session.add_all([invoice, order])
    session.flush()
    return payment, _payment_quotes(session, payment, paid)


def order_balance(session: Session, number: str, *, order: SalesOrder | None = None) -> OrderBalance:
    """`order`: the row this transaction already read (and wrote)."""
    if order is None:
        order = get_order(session, number)
    lines = _lines(session, order)
    invoices = session.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id)).all()
    due = sum((money(i.amount_residual) * (1 if i.kind == "invoice" else -1) for i in invoices), ZERO)
    open_dates = [i.due_date for i in invoices if i.kind == "invoice" and money(i.amount_residual) > 0]
    return OrderBalance(
        quote_number=number,
        fully_delivered=all(_outstanding(line) <= 0 for line in lines),
        fully_invoiced=all(qty(line.qty_invoiced) >= qty(line.quantity) - qty(line.qty_cancelled) for line in lines),
        amount_invoiced=money(order.amount_invoiced),
        amount_paid=money(order.amount_paid),
        amount_due=max(due, ZERO),
        next_due_date=min(open_dates) if open_dates else None,
    )


# ------------------------------------------------------------------------------------------- folded steps
# What the workflow used to ask for in several activities in a row, with nothing for it to decide in between, done
# in one transaction (patch "q2c-folded-steps"): fewer round trips through Temporal, one commit instead of several.
# Each is idempotent because every piece is (status by value, notices by message key, invoices by key).


def accept_order(session: Session, number: str) -> AcceptOrderResult:
    """The accepted order's credit check, and its reservation when within the limit (a held order reserves
    nothing until released). The order row is locked first, so the check and the reservation see one state."""
    order = get_order(session, number, lock=True)
    credit = credit_check(session, number, order=order)
    return AcceptOrderResult(credit=credit, reserved=None if credit.over_limit
                             else reserve_order(session, number, order=order))


def _invoice_notice(session: Session, number: str, invoice: InvoiceState, public_url: str,
                    order: SalesOrder | None = None, recipients: dict | None = None) -> None:
    if invoice.invoice_number is not None:
        queue_order_notice(session, number, message_key=f"{invoice.invoice_number}:sent", event="invoice",
                           detail=f"{invoice.invoice_number}: {invoice.amount_total} due {invoice.due_date}",
                           public_url=public_url, order=order, recipients=recipients)


def confirm_order(session: Session, number: str, *, actor: str, reason: str, invoice_key: str | None,
                  public_url: str, today: date) -> ConfirmOrderResult:
    """Confirm: status confirmed (with its audit event), the confirmation notice, the invoice of the
    ordered-policy lines when `invoice_key` is given (with its notice), and the balance after it. The order row is
    read (and locked) once and handed to each step."""
    order = set_status(session, number, OrderStatus.confirmed, actor=actor, reason=reason)
    recipients: dict = {}
    queue_order_notice(session, number, message_key=f"{number}:confirmation", event="confirmation",
                       public_url=public_url, order=order, recipients=recipients)
    invoice = _invoice_state(None)
    if invoice_key is not None:
        invoice = invoice_order(session, number, invoice_key, today=today, order=order)
        _invoice_notice(session, number, invoice, public_url, order, recipients)
    return ConfirmOrderResult(invoice=invoice, balance=order_balance(session, number, order=order))


def settle_order(session: Session, number: str, *, notices: tuple[OrderNotifyInput, ...] = (),
                 invoice_key: str | None = None, rest_invoice_key: str | None = None, close: bool = False,
                 public_url: str, today: date) -> SettleOrderResult:
    """After shipments finished or a payment came in (see SettleOrderInput): the notices, the invoice of what
    shipped, the balance, and once nothing is open and everything is delivered: the rest invoiced, delivered,
    and done when paid. The status moves only forward, so a retry after the commit changes nothing. The order row
    is read (and locked) once and handed to each step."""
    order = get_order(session, number, lock=True)
    recipients: dict = {}
    for n in notices:
        queue_order_notice(session, number, message_key=n.message_key, event=n.event, detail=n.detail,
                           public_url=public_url, order=order, recipients=recipients)
    invoices: list[InvoiceState] = []

    def invoice(key: str) -> None:
        state = invoice_order(session, number, key, today=today, order=order)
        if state.invoice_number is not None:
            invoices.append(state)
            _invoice_notice(session, number, state, public_url, order, recipients)

    if invoice_key is not None:
        invoice(invoice_key)
    balance = order_balance(session, number, order=order)
    if close and balance.fully_delivered:
        if not balance.fully_invoiced and rest_invoice_key is not None and not invoices:
            invoice(rest_invoice_key)
            balance = order_balance(session, number, order=order)
        if order.status == OrderStatus.confirmed:
            set_status(session, number, OrderStatus.delivered, actor="system", reason="everything shipped",
                       order=order)
        if balance.fully_invoiced and balance.amount_due <= ZERO and order.status == OrderStatus.delivered:
            set_status(session, number, OrderStatus.done, actor="system", reason="delivered, invoiced and paid",
                       order=order)
    return SettleOrderResult(invoices=tuple(invoices), balance=balance, status=str(order.status))


# ------------------------------------------------------------------------------------------------- cancel


def _credit_note(session: Session, order: SalesOrder, lines: list[SalesOrderLine], today: date, *,
                 key: str | None = None, keep=None, memo: str = "", piece=None) -> CustomerInvoice | None:
    """Credit what was invoiced beyond what the line keeps: by default its delivered quantity (a cancelled order
    keeps only what shipped); `keep(line)` says otherwise (cancel_backorder keeps ordered − cancelled). For
    ordered-policy lines invoiced ahead of shipping."""
    key = key or f"{order.number}/cancel/credit"
    keep = keep or (lambda ln: qty(ln.qty_delivered))
    existing = session.scalars(select(CustomerInvoice).where(CustomerInvoice.key == key)).first()
    if existing is not None:
        return existing
    pieces = []  # (line, product, units no longer invoiced, quantity shown, unit price shown, subtotal, tax)
    for line in lines:
        kept = keep(line)
        over = qty(line.qty_invoiced) - kept
        if piece is not None:  # the caller knows the exact rows (amend_order: the units beyond the new quantity, and
            # a price cut on the invoiced units that stay): (units no longer invoiced, quantity, unit price, sub, tax)
            rows = piece(line, max(over, ZERO))
        elif over <= 0:
            continue
        elif kept == 0:  # all of it: credit exactly what was invoiced
            rows = [(over, over, money(line.unit_price), *_net_invoiced(session, line.id))]
        else:
            rows = [(over, over, money(line.unit_price),
                     *_piece_amounts(session, order, line, over, completes=False))]
        if rows:
            product = session.get(Product, line.product_id)
            pieces += [(line, product, *row) for row in rows]
    if not pieces:
        return None
    number = next_number(session, "credit_note")
    untaxed = sum((p[5] for p in pieces), ZERO)
    tax = sum((p[6] for p in pieces), ZERO)
    note = CustomerInvoice(key=key, number=number, kind="credit_note", order_id=order.id,
                           customer_id=order.customer_id, invoice_date=today, due_date=today,
                           amount_untaxed=untaxed, amount_tax=tax, amount_total=untaxed + tax,
                           amount_residual=untaxed + tax)
    session.add(note)
    session.flush()
    income: dict[str, Decimal] = defaultdict(lambda: ZERO)
    taxes: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line, product, uninvoiced, quantity, unit_price, sub, tx in pieces:
        session.add(CustomerInvoiceLine(invoice_id=note.id, order_line_id=line.id, product_id=product.id,
                                        quantity=quantity, unit_price=unit_price, subtotal=sub,
                                        tax_amount=tx, cost_amount=ZERO))
        line.qty_invoiced = qty(line.qty_invoiced) - uninvoiced
        session.add(line)
        income[_category_account(session, product.category_id, "income_account_id", INCOME_ACCOUNT)] += sub
        if tx:
            taxes[_tax_account(session, product)] += tx
    session.flush()
    entry = post_entry(
        session, source_key=key, entry_date=today, journal="sales",
        memo=memo or f"Credit note {number} for cancelled {order.number}",
        lines=[
            *(LineSpec(code, debit=v, label=number, customer_id=order.customer_id) for code, v in income.items()),
            *(LineSpec(code, debit=v, label=number, customer_id=order.customer_id) for code, v in taxes.items()),
            LineSpec(RECEIVABLE_ACCOUNT, credit=note.amount_total, label=number, customer_id=order.customer_id),
        ],
    )
    note.journal_entry_id = entry.id
    order.amount_invoiced = money(order.amount_invoiced) - note.amount_total
    # Offset the credit against the order's unpaid invoices; what remains is owed back to the customer.
    for invoice in session.scalars(
        select(CustomerInvoice)
        .where(CustomerInvoice.order_id == order.id, CustomerInvoice.kind == "invoice",
               CustomerInvoice.amount_residual > 0)
        .order_by(CustomerInvoice.id)
    ).all():
        part = min(money(note.amount_residual), money(invoice.amount_residual))
        if part <= 0:
            break
        _settle(invoice, part)
        _settle(note, part)
        session.add(invoice)
    session.add_all([note, order])
    session.flush()
    return note


def cancel_order(session: Session, number: str, *, actor: str, reason: str, today: date) -> CancelOrderResult:
    """Cancel with compensation: release the reservations, cancel open shipments and every unshipped quantity,
    and credit what was invoiced but never delivered. What shipped stays delivered (a return may be offered for
    it). A second call changes nothing and returns the first call's result."""
    order = get_order(session, number, lock=True)
    if order.status == OrderStatus.cancelled:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.entity_kind == "sales_order", AuditEvent.entity_id == number,
                                     AuditEvent.action == "order.cancelled").order_by(AuditEvent.id.desc())
        ).first()
        data = event.data if event is not None else {}
        return CancelOrderResult(
            released=Decimal(data.get("released", "0")),
            backorders_cancelled=Decimal(data.get("backorders_cancelled", "0")),
            credit_note_number=data.get("credit_note_number"),
            credit_note_amount=Decimal(data.get("credit_note_amount", "0")),
            shipped_returnable=Decimal(data.get("shipped_returnable", "0")),
        )
    if order.status in TERMINAL:
        raise OrderStateError(order.status, f"order {number} is {order.status} and cannot be cancelled")
    cancelled_shipments = []
    for shipment in session.scalars(
        select(Shipment).where(Shipment.order_id == order.id, Shipment.status.in_(OPEN_SHIPMENT))
    ).all():
        shipment.status = ShipmentStatus.cancelled
        session.add(shipment)
        cancelled_shipments.append(shipment.id)
    # A drop-ship shipment that never shipped: its purchase order is cancelled with it.
    purchasing.cancel_drop_ship(session, cancelled_shipments)
    lines = _lines(session, order)
    released = cancelled = shipped = ZERO
    for line in lines:
        released += inventory.release(session, demand_key=demand_key(number, line.line_no))
        rest = _outstanding(line)
        if rest > 0:
            line.qty_cancelled = qty(line.qty_cancelled) + rest
            cancelled += rest
        line.qty_reserved = ZERO
        if not line.drop_ship:
            shipped += qty(line.qty_delivered)
        session.add(line)
    session.flush()
    note = _credit_note(session, order, lines, today)
    result = CancelOrderResult(
        released=released, backorders_cancelled=cancelled,
        credit_note_number=note.number if note is not None else None,
        credit_note_amount=money(note.amount_total) if note is not None else ZERO,
        shipped_returnable=shipped,
    )
    old = order.status
    order.status = OrderStatus.cancelled
    order.cancel_reason = reason[:500]
    order.closed_at = utcnow()
    session.add(order)
    _audit(session, actor, "order.cancelled", number, reason, old=str(old), released=str(released),
           backorders_cancelled=str(cancelled), credit_note_number=result.credit_note_number,
           credit_note_amount=str(result.credit_note_amount), shipped_returnable=str(shipped))
    session.flush()
    return result


# ------------------------------------------------------------------------------------------- cancel the rest


BACKORDER_CANCELLABLE = frozenset({OrderStatus.awaiting_customer, OrderStatus.confirmed})


def _recorded_backorder_cancel(session: Session, number: str, key: str) -> AuditEvent | None:
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_kind == "sales_order", AuditEvent.entity_id == number,
                                 AuditEvent.action == "order.backorder_cancelled")
    ).all()
    return next((e for e in events if (e.data or {}).get("key") == key), None)


def cancel_backorder(session: Session, number: str, *, actor: str, key: str, today: date) -> CancelBackorderResult:
    """The customer's "cancel the rest" (Odoo's "No Backorder", b4): on each stock line, cancel what is still
    outstanding and not reserved; what is reserved stays and ships. The line's demand stops asking for the
    cancelled part (its requested quantity drops to what it holds), so no later top-up reserves it again.
    Ordered-policy lines invoiced ahead of delivery get a credit note (key = `key`) for the cancelled units,
    offset against the order's unpaid invoices. Drop-ship lines are not backorders and stay as they are.

    Idempotent by `key`: a repeat returns the first call's result (kept in its audit event) and writes nothing."""
    if not key or len(key) > 80:
        raise OrderInputError("key", "a key of 1 to 80 characters is required")
    order = get_order(session, number, lock=True)
    recorded = _recorded_backorder_cancel(session, number, key)
    if recorded is not None:
        data = recorded.data
        return CancelBackorderResult(
            cancelled=Decimal(data["cancelled"]), credit_note_number=data.get("credit_note_number"),
            credit_note_amount=Decimal(data["credit_note_amount"]), lines=_line_states(session, order),
        )
    if order.status not in BACKORDER_CANCELLABLE:
        raise OrderStateError(order.status, f"order {number} is {order.status}: only a confirmed order, or one "
                                            "waiting for the customer's backorder choice, can cancel its backorder")
    lines = _lines(session, order)
    cancelled = ZERO
    for line in lines:
        if line.drop_ship:
            continue
        dkey = demand_key(number, line.line_no)
        held = _held(session, dkey)
        rest = _outstanding(line) - held
        if rest <= 0:
            continue
        line.qty_cancelled = qty(line.qty_cancelled) + rest
        line.qty_reserved = held
        cancelled += rest
        session.add(line)
        demand = session.execute(
            select(ReservationDemand).where(ReservationDemand.demand_key == dkey).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if demand is not None:
            demand.requested = held
            session.add(demand)
    session.flush()
    note = _credit_note(session, order, lines, today, key=key,
                        keep=lambda ln: qty(ln.quantity) - qty(ln.qty_cancelled),
                        memo=f"Credit note for the cancelled backorder of {number}")
    result = CancelBackorderResult(
        cancelled=cancelled, credit_note_number=note.number if note is not None else None,
        credit_note_amount=money(note.amount_total) if note is not None else ZERO,
        lines=_line_states(session, order),
    )
    _audit(session, actor, "order.backorder_cancelled", number, key=key, cancelled=str(cancelled),
           credit_note_number=result.credit_note_number, credit_note_amount=str(result.credit_note_amount))
    session.flush()
    return result


# ------------------------------------------------------------------------------------------------- amend

AMENDABLE = frozenset({OrderStatus.confirmed, OrderStatus.awaiting_customer})
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
# The facts of a quote policy that a price moves: a re-priced order that meets a rule on them needs an approval.
PRICE_FACTS = frozenset({"discount_percent", "margin_percent"})


class RepricingRefused(OrderStateError):
    """A price an amendment cannot set: a rise on units already invoiced. The API answers 409."""


class AmendmentNeedsApproval(OrderStateError):
    """An amendment valid in every respect but the quote approval policy: its prices meet a price rule, so the
    policy's approvers decide (`approval` says which rules, on which facts, and what would change). Raised before
    anything is committed, so the caller's transaction rolls back: nothing of the amendment is written until it
    is approved (then amend_order runs again with the approval's key, and the rules are not asked again)."""

    def __init__(self, status: str, reason: str, approval: AmendmentApproval) -> None:
        super().__init__(status, reason)
        self.approval = approval


@dataclass(frozen=True)
class _PolicyHit:
    """The price rules of the quote policy in force that an amended order meets."""

    version: int
    rule_ids: tuple[str, ...]
    reason: str
    facts: RequestFacts


def _recorded_amendment(session: Session, number: str, key: str) -> AuditEvent | None:
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.entity_kind == "sales_order", AuditEvent.entity_id == number,
                                 AuditEvent.action == "order.amended")
    ).all()
    return next((e for e in events if (e.data or {}).get("key") == key), None)


def _stored_amounts(order: SalesOrder, line: SalesOrderLine, quantity: Decimal | None = None,
                    price: tuple[Decimal, Decimal] | None = None) -> rules.LineAmounts:
    """The line's amounts as stored; or of `quantity` units, at `price` (unit price, line discount) if given."""
    unit_price, discount = price or (line.unit_price, line.discount_percent)
    return rules.line_amounts(
        quantity=qty(line.quantity) if quantity is None else quantity, unit_price=money(unit_price),
        list_price=money(line.list_price), line_discount_percent=Decimal(str(discount)),
        order_discount_percent=Decimal(str(order.order_discount_percent)), tax_rate=Decimal(str(line.tax_rate)),
        unit_cost=Decimal(str(line.unit_cost)))


def _open_shipments_by_line(session: Session, order: SalesOrder) -> dict[int, list[str]]:
    rows = session.execute(
        select(ShipmentLine.order_line_id, Shipment.number)
        .join(Shipment, Shipment.id == ShipmentLine.shipment_id)
        .where(Shipment.order_id == order.id, Shipment.status.in_(OPEN_SHIPMENT))
        .order_by(Shipment.seq)
    ).all()
    found: dict[int, list[str]] = defaultdict(list)
    for line_id, shipment_no in rows:
        found[line_id].append(shipment_no)
    return found


def _match_lines(session: Session, current: list[SalesOrderLine], wanted: tuple[QuoteLineInput, ...]):
    """Pair each wanted line with an order line of the same SKU and drop-ship flag, first come first served:
    (pairs of (wanted index, line or None for a new line), the order lines left out (removed))."""
    skus = dict(session.execute(
        select(Product.id, Product.sku).where(Product.id.in_([ln.product_id for ln in current] or [0]))
    ).all())
    free = list(current)
    pairs = []
    for i, want in enumerate(wanted):
        sku = (want.sku or "").strip()
        match = next((ln for ln in free if skus[ln.product_id] == sku and bool(ln.drop_ship) == bool(want.drop_ship)),
                     None)
        if match is not None:
            free.remove(match)
        pairs.append((i, match))
    return pairs, [ln for ln in free if qty(ln.quantity) > 0], skus


def _amended_quantity(want: QuoteLineInput, i: int) -> Decimal:
    try:
        quantity = qty(want.quantity)
    except Exception:
        raise OrderInputError(f"lines[{i}].quantity", "must be a number") from None
    if quantity < 0 or quantity != Decimal(str(want.quantity)):
        raise OrderInputError(f"lines[{i}].quantity", "must be zero or positive, with at most 3 decimals")
    if quantity > MAX_QUANTITY:
        raise OrderInputError(f"lines[{i}].quantity", f"must be at most {MAX_QUANTITY:,}")
    return quantity


def _price_changed(line: SalesOrderLine, want: QuoteLineInput) -> bool:
    try:
        return (Decimal(str(want.discount_percent)) != Decimal(str(line.discount_percent))
                or (money(line.unit_price) if line.manual_price else None)
                != (None if want.unit_price is None else Decimal(str(want.unit_price))))
    except Exception:
        return True


def _net_unit(price: tuple[Decimal, Decimal]) -> Decimal:
    """What one unit costs after the line discount, for (unit price, discount %); the order discount is the same
    on every price of the order, so it does not change which of two prices is higher."""
    unit_price, discount = price
    return money(unit_price) * (1 - Decimal(str(discount)) / 100)


def _price_note(before: tuple[Decimal, Decimal], after: tuple[Decimal, Decimal]) -> str:
    """"price 9.00 → 8.50, discount 0 % → 5 %", as the summary of an amendment says it."""
    def pct(value) -> str:
        return format(Decimal(str(value)).normalize(), "f")

    parts = []
    if money(before[0]) != money(after[0]):
        parts.append(f"price {money(before[0])} → {money(after[0])}")
    if Decimal(str(before[1])) != Decimal(str(after[1])):
        parts.append(f"discount {pct(before[1])} % → {pct(after[1])} %")
    return ", ".join(parts) or f"price {money(after[0])} kept"


def _amended_price(line: SalesOrderLine, want: QuoteLineInput, i: int) -> tuple[Decimal, Decimal]:
    """(unit price, discount %) the rep asks for on a line whose quantity does not go up: the price typed, else
    the pricelist price the line was agreed at (re-pricing does not re-read today's pricelist)."""
    discount = _percent(want.discount_percent, f"lines[{i}].discount_percent", allow_100=True)
    if want.unit_price is not None:
        return _manual_price(want.unit_price, f"lines[{i}].unit_price"), discount
    return money(line.agreed_price if line.manual_price else line.unit_price), discount


def _check_invoiced_price(line: SalesOrderLine, sku: str, status: str, new_price: tuple[Decimal, Decimal],
                          quantity: Decimal) -> None:
    """A price may go down on units already invoiced (a credit note gives the difference back), never up."""
    invoiced = min(qty(line.qty_invoiced), quantity)
    old, new = _net_unit((line.unit_price, line.discount_percent)), _net_unit(new_price)
    if invoiced > 0 and new > old:
        raise RepricingRefused(status, (
            f"line {line.line_no} ({sku}): {format(invoiced.normalize(), 'f')} are invoiced already at "
            f"{money(old)} each, and an amendment does not raise the price of invoiced units (distributors do not "
            f"send a second invoice for a price difference): cancel the order and invoice it again at {money(new)}, "
            "or keep the price"))


def _credit_rows(session: Session, order: SalesOrder, line: SalesOrderLine, over: Decimal,
                 was: tuple[Decimal, Decimal] | None) -> list[tuple]:
    """The credit note's rows for one amended line (see _credit_note): the invoiced units beyond its new quantity
    (`over`), then, when its price went down (`was`: the unit price and discount before), the difference on the
    invoiced units it keeps. What stays invoiced is then exactly the kept units at the line's price now, so the
    invoices still to come complete the line to the cent."""
    sub, tax = _net_invoiced(session, line.id)
    kept = qty(line.qty_invoiced) - over
    now = _stored_amounts(order, line, kept)
    rows = []
    if over > 0:
        before = now if was is None else _stored_amounts(order, line, kept, was)
        unit = money(was[0] if was is not None else line.unit_price)
        rows.append((over, over, unit, sub - before.subtotal, tax - before.tax))
        sub, tax = before.subtotal, before.tax
    cut = sub - now.subtotal
    if was is not None and kept > 0 and cut > 0:
        # Nothing is un-invoiced: the row shows the units re-priced and what each one is cheaper by.
        rows.append((ZERO, kept, money(cut / kept), cut, max(tax - now.tax, ZERO)))
    return rows


def _policy_limit(session: Session, order: SalesOrder, today: date) -> _PolicyHit | None:
    """The quote approval policy in force (as a new quote would be judged: workflows.quote_to_cash.quote_facts)
    on the order as it now stands: its rules on price facts (concession, margin) that the order meets, with the
    facts judged; None when no such rule asks for approval."""
    policy = policy_in_force(session, DocumentKind.quote.value, today)
    if policy is None:
        return None
    state = quote_state(session, order.number, order=order)
    facts = RequestFacts(
        amount=state.amount_untaxed, discount_percent=state.concession_percent, margin_percent=state.margin_percent,
        customer_segment=state.customer_segment, category=state.categories[0] if state.categories else "",
        branch=state.branch, requester=order.rep)
    hits = [r for r in body_from_json(policy.body).rules
            if any(c.fact in PRICE_FACTS for c in r.conditions) and matches(r, facts)]
    if not hits:
        return None
    reason = f"the quote approval policy (version {policy.version}) asks for approval when " + "; or when ".join(
        f"{conditions_text(r.conditions)} ({r.rule_id}: {r.step.name})" for r in hits)
    return _PolicyHit(policy.version, tuple(r.rule_id for r in hits), reason, facts)


def _amended_lines(session: Session, lines: list[SalesOrderLine],
                   before: dict[int, tuple[Decimal, Decimal, Decimal]]) -> tuple[AmendedLine, ...]:
    """The lines whose quantity, price or discount differ from `before` (line id -> (ordered − cancelled, unit
    price, discount %) as they stood), and the new ones, before → after."""
    skus = dict(session.execute(
        select(Product.id, Product.sku).where(Product.id.in_([ln.product_id for ln in lines] or [0]))).all())
    changed = []
    for ln in lines:
        now = (qty(ln.quantity) - qty(ln.qty_cancelled), money(ln.unit_price), Decimal(str(ln.discount_percent)))
        was = before.get(ln.id)
        if was == now:
            continue
        changed.append(AmendedLine(
            line_no=ln.line_no, sku=skus[ln.product_id], quantity_before=was[0] if was else ZERO, quantity=now[0],
            unit_price_before=was[1] if was else None, unit_price=now[1],
            discount_percent_before=was[2] if was else None, discount_percent=now[2], subtotal=money(ln.subtotal)))
    return tuple(changed)


def _amend_floor(line: SalesOrderLine, sku: str, field: str, new: Decimal, in_open: Decimal,
                 shipments: list[str]) -> None:
    """A line may not go below what left the warehouse plus what sits in a shipment not yet shipped."""
    delivered = qty(line.qty_delivered)
    if new >= delivered + in_open:
        return
    if in_open > 0 and new < delivered + in_open:
        names = ", ".join(shipments)
        raise OrderInputError(field, f"line {line.line_no} ({sku}) cannot go below "
                                     f"{format((delivered + in_open).normalize(), 'f')}: "
                                     f"{format(in_open.normalize(), 'f')} wait in shipment {names}; "
                                     f"ship or cancel shipment {names} first")
    raise OrderInputError(field, f"line {line.line_no} ({sku}) cannot go below the "
                                 f"{format(delivered.normalize(), 'f')} already delivered; offer a return instead")


def _amendment_result(session: Session, number: str, data: dict, reserved: ReserveOrderResult) -> AmendOrderResult:
    invoice = None
    if data.get("invoice_key"):
        invoice = session.scalars(select(CustomerInvoice).where(CustomerInvoice.key == data["invoice_key"])).first()
    return AmendOrderResult(
        version=int(data["version"]), summary=data["summary"], amount_total=Decimal(data["amount_total"]),
        released=Decimal(data["released"]), credit_note_number=data.get("credit_note_number"),
        credit_note_amount=Decimal(data["credit_note_amount"]), invoice=_invoice_state(invoice), reserved=reserved,
        quote=quote_state(session, number),
    )


def amend_order(session: Session, number: str, cmd: AmendOrderCommand, *, key: str, today: date,
                invoice_key: str | None = None, public_url: str = DEFAULT_PUBLIC_URL,
                approval_key: str | None = None, approved_by: tuple[str, ...] = ()) -> AmendOrderResult:
    """Amend a confirmed (or awaiting_customer) order: `cmd.lines` is the full new set of lines.

    - Lines are matched to the order's by SKU and drop-ship flag (first come first served); a line left out is
      lowered to 0 (it stays, with its line number, because shipments, invoices and its demand key refer to it);
      a new line gets the next line number. A line's new quantity replaces ordered − cancelled.
    - No line goes below delivered + in open shipments (the refusal names the shipment to ship or cancel first).
    - Down: the surplus reservation is released and the demand stops asking for it; ordered-policy units invoiced
      beyond the new quantity are credited (credit note under `key`, offset against unpaid invoices). A lowered
      line keeps its agreed unit price unless the rep changes it.
    - Up or new: priced by the pricelist at the new quantity (as edit_quote prices), then the credit check: an
      increase that leaves the customer over the limit is refused (CreditLimitExceeded), nothing written. Then the
      order reserves (reserve_order) and, with `invoice_key`, invoices the ordered-policy increase.
    - Price (a typed unit price or line discount, also without a quantity change; a removed manual price goes back
      to the agreed pricelist price): the new price is the line's, for every unit. Units already invoiced at a
      higher price get the difference in the credit note; a higher price on invoiced units is refused
      (RepricingRefused: cancel and invoice again). A rise is credit-checked like a raise.
    - Approval: a re-pricing that takes the order into a price rule of the quote approval policy in force, and is
      valid in every other respect (every refusal above comes first), raises AmendmentNeedsApproval before anything
      is committed: the caller rolls back and asks the policy's approvers. Called again with `approval_key` (the
      approved request) and `approved_by`, the rules are not asked; everything else is checked again then.
    - The version goes up by one, an audit event records it, and the customer and rep get an "amendment" notice.

    Idempotent by `key`: a repeat returns the first call's result (kept in its audit event) and changes nothing
    (its reservation pass only tops up, never doubles)."""
    if not key or len(key) > 80:
        raise OrderInputError("key", "a key of 1 to 80 characters is required")
    order = get_order(session, number, lock=True)
    recorded = _recorded_amendment(session, number, key)
    if recorded is not None:
        return _amendment_result(session, number, recorded.data, reserve_order(session, number))
    if order.status not in AMENDABLE:
        raise OrderStateError(order.status, f"order {number} is {order.status}: only a confirmed order, or one "
                                            "waiting for the customer's backorder choice, can be amended")
    if cmd.expected_version is not None and cmd.expected_version != order.version:
        raise StaleVersion(order.status, f"order {number} was changed meanwhile (now version {order.version}, "
                                         f"your amendment was of version {cmd.expected_version}): reload and "
                                         "amend again")
    wanted = tuple(cmd.lines or ())
    if not wanted:
        raise OrderInputError("lines", "an amended order keeps at least one line (cancel the order instead)")
    current = _lines(session, order)
    pairs, removed, skus = _match_lines(session, current, wanted)
    in_open = _in_open_shipments(session, order)
    open_names = _open_shipments_by_line(session, order)
    old_total = money(order.amount_total)
    old_concession, old_margin = Decimal(str(order.concession_percent)), Decimal(str(order.margin_percent))
    # Each line as it stood (ordered − cancelled, unit price, discount %): what an approver sees it change from.
    stood = {ln.id: (qty(ln.quantity) - qty(ln.qty_cancelled), money(ln.unit_price),
                     Decimal(str(ln.discount_percent))) for ln in current}

    changes: list[str] = []
    lowered: list[tuple[SalesOrderLine, Decimal]] = []  # (line, new quantity)
    raised: list[tuple[SalesOrderLine | None, int, Decimal]] = []  # (line or None for new, wanted index, quantity)
    # Lines not raised whose price the rep changes: (line, wanted index, (unit price, discount %), typed by hand).
    repriced: list[tuple[SalesOrderLine, int, tuple[Decimal, Decimal], bool]] = []
    rep_priced = False  # the rep set a price or discount: the approval policy's price rules are asked
    for i, line in pairs:
        want = wanted[i]
        new = _amended_quantity(want, i)
        if line is None:
            if new == 0:
                raise OrderInputError(f"lines[{i}].quantity", "a new line needs a positive quantity")
            raised.append((None, i, new))
            continue
        effective = qty(line.quantity) - qty(line.qty_cancelled)
        price_changed = new > 0 and _price_changed(line, want)
        if new == effective and not price_changed:
            continue
        rep_priced |= price_changed
        if new != effective:
            _amend_floor(line, skus[line.product_id], f"lines[{i}].quantity", new, in_open.get(line.id, ZERO),
                         open_names.get(line.id, []))
        if new > effective:
            raised.append((line, i, new))  # priced below, at the new quantity
            continue
        if price_changed:
            price = _amended_price(line, want, i)
            _check_invoiced_price(line, skus[line.product_id], order.status, price, new)
            repriced.append((line, i, price, want.unit_price is not None))
        if new < effective:
            lowered.append((line, new))
    for line in removed:
        _amend_floor(line, skus[line.product_id], "lines", ZERO, in_open.get(line.id, ZERO),
                     open_names.get(line.id, []))
        lowered.append((line, ZERO))
    if not lowered and not raised and not repriced:
        raise OrderInputError("lines", "the amendment changes nothing")

    # Re-priced: the new price holds for every unit of the line; `was` keeps the price it replaces on lines with
    # invoiced units, whose difference the credit note gives back.
    was: dict[int, tuple[Decimal, Decimal]] = {}
    credited: dict[int, SalesOrderLine] = {line.id: line for line, _ in lowered}
    price_notes: dict[int, str] = {}
    for line, i, price, manual in repriced:
        before = (money(line.unit_price), Decimal(str(line.discount_percent)))
        if qty(line.qty_invoiced) > 0 and _net_unit(price) != _net_unit(before):
            was[line.id], credited[line.id] = before, line
        line.unit_price, line.discount_percent = price
        line.manual_price, line.price_rule_id = manual, None if manual else line.price_rule_id
        a = _stored_amounts(order, line)
        if a.subtotal > MAX_AMOUNT:
            raise OrderInputError(f"lines[{i}].unit_price", f"the line amount would exceed {MAX_AMOUNT:,}")
        line.subtotal, line.tax_amount = a.subtotal, a.tax
        session.add(line)
        price_notes[line.id] = _price_note(before, price)
        if not any(ln is line for ln, _ in lowered):
            changes.append(f"{skus[line.product_id]} {price_notes[line.id]}")

    # Down: give back the surplus reservation, then the line's new quantity and amounts.
    released = ZERO
    for line, new in lowered:
        sku = skus[line.product_id]
        old = qty(line.quantity) - qty(line.qty_cancelled)
        line.quantity, line.qty_cancelled = new, ZERO
        a = _stored_amounts(order, line)
        line.subtotal, line.tax_amount = a.subtotal, a.tax
        if not line.drop_ship:
            dkey = demand_key(number, line.line_no)
            surplus = _held(session, dkey) - _outstanding(line)
            if surplus > 0:
                released += inventory.release(session, demand_key=dkey, quantity=surplus)
            demand = session.execute(
                select(ReservationDemand).where(ReservationDemand.demand_key == dkey).with_for_update()
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
            if demand is not None:  # no later top-up reserves the part given up
                demand.requested = min(qty(demand.requested), max(_outstanding(line), ZERO))
                session.add(demand)
            line.qty_reserved = _held(session, dkey)
        session.add(line)
        changes.append(f"{sku} {format(old.normalize(), 'f')} → {format(new.normalize(), 'f')}"
                       + (f", {price_notes[line.id]}" if line.id in price_notes else "")
                       if new > 0 else f"{sku} removed")
    session.flush()

    # Up or new: priced by the pricelist at the new quantity.
    next_no = max((ln.line_no for ln in current), default=0)
    ordered_increase = False
    if raised:
        try:
            priced = _price_lines(session, [replace_quantity(wanted[i], q) for _, i, q in raised],
                                  pricelist_id=order.pricelist_id,
                                  order_discount=Decimal(str(order.order_discount_percent)), today=today)
        except OrderInputError as err:  # it numbers the lines it was given; name the line as the rep sent it
            k = re.match(r"lines\[(\d+)\]", err.field)
            if k is None:
                raise
            raise OrderInputError(f"lines[{raised[int(k[1])][1]}]{err.field[k.end():]}", err.reason) from None
        for (line, i, new), p in zip(raised, priced):
            promise = None if p.data.drop_ship else _line_promise(session, p.product.id, p.quantity,
                                                                  order.warehouse_id, today)
            price = (p.unit_price, Decimal(str(p.data.discount_percent)))
            if line is None:
                next_no += 1
                line = SalesOrderLine(order_id=order.id, line_no=next_no, product_id=p.product.id,
                                      description=p.product.name[:200], drop_ship=p.data.drop_ship)
                changes.append(f"+ {format(new.normalize(), 'f')} {p.product.sku}")
                rep_priced |= p.data.unit_price is not None or price[1] != 0
            else:
                old = qty(line.quantity) - qty(line.qty_cancelled)
                before = (money(line.unit_price), Decimal(str(line.discount_percent)))
                # The pricelist at the new quantity may price every unit lower (a quantity break): a credit on
                # what is invoiced, as for a price the rep typed; a higher price on invoiced units is refused.
                if qty(line.qty_invoiced) > 0 and _net_unit(price) != _net_unit(before):
                    _check_invoiced_price(line, p.product.sku, order.status, price, new)
                    was[line.id], credited[line.id] = before, line
                note = f", {_price_note(before, price)}" if _net_unit(price) != _net_unit(before) else ""
                changes.append(f"{p.product.sku} {format(old.normalize(), 'f')} → {format(new.normalize(), 'f')}"
                               + note)
            line.quantity, line.qty_cancelled = p.quantity, ZERO
            line.list_price, line.unit_price, line.price_rule_id = p.list_price, p.unit_price, p.rule_id
            line.agreed_price, line.manual_price = p.agreed_price, p.data.unit_price is not None
            line.discount_percent = Decimal(str(p.data.discount_percent))
            line.unit_cost, line.tax_rate = p.unit_cost, p.tax_rate
            line.subtotal, line.tax_amount = p.amounts.subtotal, p.amounts.tax
            line.promised_date = promise
            session.add(line)
            policy = p.product.invoice_policy
            ordered_increase |= str(policy.value if hasattr(policy, "value") else policy) == "ordered"
        session.flush()

    # The order's totals, from every line as it now stands.
    lines = _lines(session, order)
    amounts = [_stored_amounts(order, ln) for ln in lines]
    totals = rules.quote_totals(amounts)
    order.list_total, order.amount_untaxed, order.amount_tax = totals.list_total, totals.untaxed, totals.tax
    order.amount_total, order.cost_total = totals.total, totals.cost
    order.discount_percent, order.margin_percent = totals.discount_percent, totals.margin_percent
    order.agreed_total = sum((money(qty(ln.quantity) * money(ln.agreed_price)) for ln in lines), ZERO)
    order.concession_percent = rules.concession_percent(order.agreed_total, totals.untaxed)
    promises = [ln.promised_date for ln in lines if ln.promised_date is not None and _outstanding(ln) > 0]
    order.promised_date = (rules.order_promised_date(promises, _shipping_policy(order.backorder_preference))
                           or order.promised_date)
    order.version += 1
    session.add(order)
    session.flush()

    concession, margin = Decimal(str(order.concession_percent)), Decimal(str(order.margin_percent))
    hit = None
    if approval_key is None and rep_priced and (concession > old_concession or margin < old_margin):
        hit = _policy_limit(session, order, today)

    if money(order.amount_total) > old_total:
        credit = credit_check(session, number)
        if credit.over_limit:
            raise CreditLimitExceeded(order.status, (
                f"the amendment raises order {number} from {old_total} to {order.amount_total}: the exposure of "
                f"{credit.exposure} would exceed the credit limit {credit.limit}; a payment first, or a smaller "
                "amendment"))

    if hit is not None:
        # Nothing else stands in its way (every refusal came first): the policy's approvers decide. The caller's
        # transaction rolls back what was changed above; the amendment is applied only once approved.
        raise AmendmentNeedsApproval(order.status, (
            f"the new prices take order {number} to {format(concession.normalize(), 'f')} % off the agreed prices "
            f"(margin {format(margin.normalize(), 'f')} %), and {hit.reason}: the amendment needs approval"),
            AmendmentApproval(policy_version=hit.version, rule_ids=hit.rule_ids, reason=hit.reason,
                              summary="; ".join(changes), facts=hit.facts,
                              lines=_amended_lines(session, lines, stood), amount_total_before=old_total,
                              amount_total=money(order.amount_total)))

    # Ordered-policy units invoiced beyond the new quantity, and a price cut on invoiced units: credit them, so
    # what stays invoiced is exactly the line's units at its new price.
    note = _credit_note(session, order, list(credited.values()), today, key=key,
                        keep=lambda ln: qty(ln.quantity), memo=f"Credit note for the amendment of {number}",
                        piece=lambda ln, over: _credit_rows(session, order, ln, over, was.get(ln.id)))
    reserved = reserve_order(session, number)
    invoice = _invoice_state(None)
    if invoice_key is not None and ordered_increase:
        invoice = invoice_order(session, number, invoice_key, today=today)
    summary = "; ".join(changes)
    data = dict(key=key, version=order.version, summary=summary, amount_total=str(order.amount_total),
                old_total=str(old_total), released=str(released),
                credit_note_number=note.number if note is not None else None,
                credit_note_amount=str(money(note.amount_total)) if note is not None else "0",
                invoice_key=invoice_key if invoice.invoice_number is not None else None,
                removed=[ln.line_no for ln, new in lowered if new == 0])  # the order page says who removed it, when
    if approval_key is not None:  # the policy's rules were not asked: the trail names who approved instead
        data.update(approval_key=approval_key, approved_by=list(approved_by))
    _audit(session, cmd.actor.username, "order.amended", number, cmd.comment, **data)
    detail = f"Amended (version {order.version}): {summary}. New total {order.amount_total}."
    if note is not None:
        detail += f" Credit note {note.number} for {money(note.amount_total)}."
    queue_order_notice(session, number, message_key=f"{number}:amended:{order.version}", event="amendment",
                       detail=detail, public_url=public_url)
    _invoice_notice(session, number, invoice, public_url)
    session.flush()
    return _amendment_result(session, number, data, reserved)


def unapplied_amendment(session: Session, number: str, approval: AmendmentApproval) -> AmendOrderResult:
    """amend_order's answer for an amendment sent to approval (AmendmentNeedsApproval, rolled back): the order as
    it stands, nothing released, credited, invoiced or reserved, and what the approvers are asked."""
    state = quote_state(session, number)
    return AmendOrderResult(
        version=state.version, summary=approval.summary, amount_total=state.amount_total, released=ZERO,
        credit_note_number=None, credit_note_amount=ZERO, invoice=_invoice_state(None),
        reserved=ReserveOrderResult(lines=(), fully_reserved=False, shortfall=ZERO), quote=state,
        approval_needed=approval)


def replace_quantity(line: QuoteLineInput, quantity: Decimal) -> QuoteLineInput:
    return QuoteLineInput(sku=line.sku, quantity=quantity, discount_percent=line.discount_percent,
                          unit_price=line.unit_price, drop_ship=line.drop_ship)


# ------------------------------------------------------------------------------------------------- notices

# event -> subject (OrderNotifyInput.event)
NOTICE_SUBJECTS = {
    "confirmation": "Order {number} confirmed",
    "amendment": "Order {number} amended",
    "hold": "Order {number} is on credit hold",
    "shipment": "Order {number}: shipment on its way",
    "delay": "Order {number}: delivery delayed",
    "invoice": "Invoice for order {number}",
    "reminder": "Payment reminder for order {number}",
    "collections": "Collections: order {number} is overdue after the last reminder",
    "amendment_rejected": "Order {number}: amendment not approved",
    "amendment_refused": "Order {number}: amendment not applied",
}
# Events that are work for a group rather than news for the customer: who gets them. Collections is finance's:
# after the last reminder somebody has to call the customer, stop deliveries or hand the claim on.
GROUP_NOTICES = {"collections": ("finance",)}
# Events for the rep alone: an amendment that went to approval and did not happen was never news to the customer.
REP_NOTICES = frozenset({"amendment_rejected", "amendment_refused"})


def _notice_body(order: SalesOrder, customer: Customer, event: str, detail: str) -> str:
    lines = [
        f"Dear {customer.name},",
        "",
        f"{NOTICE_SUBJECTS[event].format(number=order.number)}.",
        f"Order total: {order.amount_total} (of which tax {order.amount_tax}).",
    ]
    if order.customer_ref:
        lines.append(f"Your reference: {order.customer_ref}")
    if order.promised_date and event in ("confirmation", "delay", "shipment"):
        lines.append(f"Promised delivery date: {order.promised_date.isoformat()}")
    if detail:
        lines += ["", detail]
    return "\n".join(lines) + "\n"


def _group_notice_body(order: SalesOrder, customer: Customer, event: str, detail: str) -> str:
    lines = [
        f"{NOTICE_SUBJECTS[event].format(number=order.number)}.",
        f"Customer: {customer.code} {customer.name}" + (f" <{customer.email}>" if customer.email else ""),
        f"Order total: {order.amount_total}; invoiced {order.amount_invoiced}, paid {order.amount_paid}.",
        f"Sales rep: {order.rep}",
    ]
    if detail:
        lines += ["", detail]
    return "\n".join(lines) + "\n"


def queue_order_notice(session: Session, number: str, *, message_key: str, event: str, detail: str = "",
                       public_url: str, order: SalesOrder | None = None, recipients: dict | None = None,
                       also_to: str = "") -> int:
    """Queue the e-mails about an order event in the outbox; returns how many were new (a retry adds none).

    Customer events go to the customer (key `<message_key>:customer`) and the rep (`<message_key>:<rep>`, with a
    link to the order page). Group events (GROUP_NOTICES) go to every active member of the group instead
    (`<message_key>:<username>`, with the link), through the outbox's group queue; rep events (REP_NOTICES) to the
    rep (`<message_key>:<rep>`), and to `also_to` when that active user asked for what the notice is about and is
    not the rep (a sales manager who amended the order: `<message_key>:<username>`)."""
    if event not in NOTICE_SUBJECTS:
        raise OrderInputError("event", f"unknown order event {event!r}")
    if order is None:
        order = get_order(session, number)
    # The customer and the rep's address in one statement (the rep's is unused for a group event); `recipients`
    # keeps them for the next notice of the same call (confirm_order and settle_order queue two or three).
    found = recipients.get(order.id) if recipients is not None else None
    if found is None:
        found = session.execute(
            select(Customer, select(User.email).where(User.username == order.rep, User.active.is_(True))
                   .limit(1).scalar_subquery())
            .where(Customer.id == order.customer_id)
        ).one()
        if recipients is not None:
            recipients[order.id] = found
    customer, rep_email = found
    subject = NOTICE_SUBJECTS[event].format(number=order.number)
    link = f"{public_url.rstrip('/')}/orders/{order.number}"
    if event in GROUP_NOTICES:
        body = _group_notice_body(order, customer, event, detail) + f"\nOpen the order: {link}\n"
        return outbox.queue_for_groups(session, message_key=message_key, groups=GROUP_NOTICES[event],
                                       subject=subject, body=body, link=link)
    if event in REP_NOTICES:
        body = _group_notice_body(order, customer, event, detail) + f"\nOpen the order: {link}\n"
        copies = [outbox.OutgoingMessage(f"{message_key}:{order.rep}", rep_email, subject, body, link)] if rep_email \
            else []
        if also_to and also_to != order.rep:
            asker_email = session.scalar(select(User.email).where(User.username == also_to, User.active.is_(True)))
            if asker_email:
                copies.append(outbox.OutgoingMessage(f"{message_key}:{also_to}", asker_email, subject, body, link))
        return outbox.queue_messages(session, copies)
    body = _notice_body(order, customer, event, detail)
    copies = []  # the customer's and the rep's, in one statement
    if customer.email:
        copies.append(outbox.OutgoingMessage(f"{message_key}:customer", customer.email, subject, body))
    if rep_email:
        copies.append(outbox.OutgoingMessage(f"{message_key}:{order.rep}", rep_email, subject,
                                             body + f"\nOpen the order: {link}\n", link))
    return outbox.queue_messages(session, copies)
