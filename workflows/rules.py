"""Quote-to-cash business rules as pure functions: pricing (Odoo pricelists, erp-anchors b7), line and quote
totals, credit exposure (ERPNext, b5), promised dates and shipping policy (b4), shortage splits, invoiceable
quantities and the dunning schedule.

No database, no Temporal, no clock: every input is an argument, so the QuoteToCash workflow can call these
directly (deterministic on replay), models/orders.py can call them inside a transaction, and the tests can check
each figure by hand. Money and quantities are Decimal; a float argument is refused (TypeError) rather than
silently carrying binary rounding error into an invoice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
PERCENT_STEP = Decimal("0.001")

# Protocol strings, equal to the StrEnum values in models.common (not imported: this module stays importable in
# the workflow sandbox without pulling in SQLModel).
KIND_FIXED = "fixed"
KIND_DISCOUNT = "discount"
KIND_FORMULA = "formula"
BASE_LIST_PRICE = "list_price"
BASE_STANDARD_COST = "standard_cost"
SHIP_AVAILABLE = "ship_available"
SHIP_COMPLETE = "ship_complete"
ASK = "ask"
POLICY_ORDERED = "ordered"
POLICY_DELIVERED = "delivered"
SHIPPING_DIRECT = "direct"
SHIPPING_ONE = "one"
DEFAULT_REMINDER_DAYS = (7, 14, 30)


def _dec(value: Decimal | int, name: str) -> Decimal:
    # bool is an int but never a meaningful amount; float would smuggle binary rounding error into money.
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"{name} must be a Decimal (or int), got {type(value).__name__}")


def round_money(value: Decimal) -> Decimal:
    """Round to cents, half up (commercial rounding, as on an invoice)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def round_percent(value: Decimal) -> Decimal:
    return value.quantize(PERCENT_STEP, rounding=ROUND_HALF_UP)


def round_to_multiple(value: Decimal, step: Decimal) -> Decimal:
    """Nearest multiple of `step`, halves away from zero (Odoo's float_round HALF-UP on price_round)."""
    if step <= 0:
        return value
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


# ---------------------------------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class PriceRule:
    """A pricelist_rule row as plain data (models.masterdata.PricelistRule)."""

    id: int
    kind: str  # "fixed" | "discount" | "formula"  (models.common.PricelistRuleKind values)
    product_id: int | None = None
    category_id: int | None = None
    min_quantity: Decimal = Decimal(0)
    date_start: date | None = None
    date_end: date | None = None
    fixed_price: Decimal | None = None
    percent_discount: Decimal | None = None
    base: str = BASE_LIST_PRICE  # "list_price" | "standard_cost"
    price_round: Decimal | None = None
    price_surcharge: Decimal | None = None
    # Bounds relative to the formula's base (list price or cost): base * (1 + pct/100).
    min_margin_percent: Decimal | None = None
    max_margin_percent: Decimal | None = None


def _specificity(rule: PriceRule, product_id: int, category_path: tuple[int, ...]) -> int | None:
    """Rank of an applicable rule (lower = more specific), or None when the rule does not apply to the product.

    0 = this product; 1 + i = the category at depth i of the path (0 is the product's own category); and
    1 + len(path) = all products. A rule naming both a product and a category applies only when both hold (it is
    still a product rule)."""
    if rule.product_id is not None:
        if rule.product_id != product_id:
            return None
        if rule.category_id is not None and rule.category_id not in category_path:
            return None
        return 0
    if rule.category_id is not None:
        if rule.category_id not in category_path:
            return None
        return 1 + category_path.index(rule.category_id)
    return 1 + len(category_path)


def select_price_rule(
    rules: Sequence[PriceRule],
    *,
    product_id: int,
    category_path: tuple[int, ...],
    quantity: Decimal,
    on: date,
) -> PriceRule | None:
    """The rule that prices `quantity` of the product on date `on`, or None (then the list price applies).

    Applicable: date_start <= on <= date_end (None = open), quantity >= min_quantity, and the rule names the
    product, a category in `category_path` (the product's category first, then its ancestors), or neither (all).
    Most specific wins: product > nearer category > farther category > all; then the higher min_quantity (the
    quantity tier reached), then the lower id (the older rule)."""
    qty = _dec(quantity, "quantity")
    best: tuple[int, Decimal, int] | None = None
    chosen: PriceRule | None = None
    for rule in rules:
        if rule.date_start is not None and on < rule.date_start:
            continue
        if rule.date_end is not None and on > rule.date_end:
            continue
        if qty < rule.min_quantity:
            continue
        rank = _specificity(rule, product_id, category_path)
        if rank is None:
            continue
        key = (rank, -rule.min_quantity, rule.id)
        if best is None or key < best:
            best, chosen = key, rule
    return chosen


def rule_price(rule: PriceRule | None, *, list_price: Decimal, cost: Decimal) -> Decimal:
    """Unit price under `rule` (erp-anchors b7), rounded to cents half up.

    None → list price. fixed → fixed_price. discount → list_price × (1 − pct/100). formula → base (list price or
    standard cost) × (1 − pct/100) (a negative discount is a markup: −100 on cost doubles it), rounded to a
    multiple of price_round BEFORE price_surcharge is added (round 10, surcharge −0.01 → prices ending in 9.99),
    then kept within [base × (1 + min%/100), base × (1 + max%/100)] where set; the max bound is applied last, so
    it wins if the two cross (as in Odoo)."""
    list_price = _dec(list_price, "list_price")
    cost = _dec(cost, "cost")
    if rule is None:
        return round_money(list_price)
    if rule.kind == KIND_FIXED:
        if rule.fixed_price is None:
            raise ValueError(f"pricelist rule {rule.id}: a fixed rule needs fixed_price")
        return round_money(_dec(rule.fixed_price, "fixed_price"))
    pct = _dec(rule.percent_discount, "percent_discount") if rule.percent_discount is not None else ZERO
    if rule.kind == KIND_DISCOUNT:
        return round_money(list_price * (1 - pct / HUNDRED))
    if rule.kind != KIND_FORMULA:
        raise ValueError(f"pricelist rule {rule.id}: unknown kind {rule.kind!r}")
    if rule.base == BASE_LIST_PRICE:
        base = list_price
    elif rule.base == BASE_STANDARD_COST:
        base = cost
    else:
        raise ValueError(f"pricelist rule {rule.id}: unknown base {rule.base!r}")
    price = base * (1 - pct / HUNDRED)
    if rule.price_round is not None:
        price = round_to_multiple(price, _dec(rule.price_round, "price_round"))
    if rule.price_surcharge is not None:
        price += _dec(rule.price_surcharge, "price_surcharge")
    if rule.min_margin_percent is not None:
        price = max(price, base * (1 + _dec(rule.min_margin_percent, "min_margin_percent") / HUNDRED))
    if rule.max_margin_percent is not None:
        price = min(price, base * (1 + _dec(rule.max_margin_percent, "max_margin_percent") / HUNDRED))
    return round_money(price)


# ------------------------------------------------------------------------------------------------ line totals


@dataclass(frozen=True)
class LineAmounts:
    subtotal: Decimal  # untaxed, after line and order discounts
    tax: Decimal
    cost: Decimal
    margin: Decimal
    list_amount: Decimal  # quantity × list price: what the customer would pay without any pricelist or discount


def line_amounts(
    *,
    quantity: Decimal,
    unit_price: Decimal,
    list_price: Decimal,
    line_discount_percent: Decimal,
    order_discount_percent: Decimal,
    tax_rate: Decimal,
    unit_cost: Decimal,
) -> LineAmounts:
    """Amounts of one quote line. Tax is rounded per line (as printed on the invoice), so the quote's tax is the
    sum of the printed line taxes and never disagrees with them by a cent."""
    q = _dec(quantity, "quantity")
    line_pct = _dec(line_discount_percent, "line_discount_percent")
    order_pct = _dec(order_discount_percent, "order_discount_percent")
    subtotal = round_money(
        q * _dec(unit_price, "unit_price") * (1 - line_pct / HUNDRED) * (1 - order_pct / HUNDRED)
    )
    tax = round_money(subtotal * _dec(tax_rate, "tax_rate") / HUNDRED)
    cost = round_money(q * _dec(unit_cost, "unit_cost"))
    return LineAmounts(
        subtotal=subtotal,
        tax=tax,
        cost=cost,
        margin=subtotal - cost,
        list_amount=round_money(q * _dec(list_price, "list_price")),
    )


@dataclass(frozen=True)
class QuoteTotals:
    untaxed: Decimal
    tax: Decimal
    total: Decimal
    cost: Decimal
    margin: Decimal
    margin_percent: Decimal  # margin / untaxed × 100
    discount_percent: Decimal  # effective discount off list: (list_total − untaxed) / list_total × 100
    list_total: Decimal


def quote_totals(lines: Sequence[LineAmounts]) -> QuoteTotals:
    untaxed = sum((line.subtotal for line in lines), ZERO)
    tax = sum((line.tax for line in lines), ZERO)
    cost = sum((line.cost for line in lines), ZERO)
    margin = sum((line.margin for line in lines), ZERO)
    list_total = sum((line.list_amount for line in lines), ZERO)
    # An empty or all-free quote has no meaningful ratio; 0 keeps approval facts comparable instead of failing.
    margin_percent = round_percent(margin / untaxed * HUNDRED) if untaxed != 0 else round_percent(ZERO)
    discount_percent = (
        round_percent((list_total - untaxed) / list_total * HUNDRED) if list_total != 0 else round_percent(ZERO)
    )
    return QuoteTotals(
        untaxed=untaxed,
        tax=tax,
        total=untaxed + tax,
        cost=cost,
        margin=margin,
        margin_percent=margin_percent,
        discount_percent=discount_percent,
        list_total=list_total,
    )


CONCESSION_FLOOR = Decimal(-999)


def concession_percent(agreed_total: Decimal, untaxed: Decimal) -> Decimal:
    """The rep's discount off what the customer's pricelist already grants: (agreed − quoted) / agreed × 100.

    Pricelist prices are agreed business (approved when the pricelist was); what a quote gives on top — line and
    order discounts, manual prices under the pricelist's — is what the quote approval policy routes on. Negative
    when the quote is priced above the pricelist (floored at −999 %, the column's range); 0 for a free quote."""
    agreed, quoted = _dec(agreed_total, "agreed_total"), _dec(untaxed, "untaxed")
    if agreed == 0:
        return round_percent(ZERO)
    return max(CONCESSION_FLOOR, round_percent((agreed - quoted) / agreed * HUNDRED))


# ----------------------------------------------------------------------------------------------------- credit


def uninvoiced_amount(amount_total: Decimal, amount_invoiced: Decimal) -> Decimal:
    """What an open order still adds to exposure: its total less what is already invoiced (that part is in the
    receivable ledger), never negative (an over-invoiced order must not lower the exposure)."""
    return max(ZERO, _dec(amount_total, "amount_total") - _dec(amount_invoiced, "amount_invoiced"))


@dataclass(frozen=True)
class CreditDecision:
    exposure: Decimal
    limit: Decimal
    over_limit: bool
    headroom: Decimal  # limit − exposure; negative when over; meaningless when limit <= 0 (no limit)


def credit_check(
    *, posted_receivable: Decimal, uninvoiced_orders: Decimal, this_order: Decimal, limit: Decimal
) -> CreditDecision:
    """ERPNext's blocking check (erp-anchors b5): exposure = posted receivable + uninvoiced open orders + this
    order; over the limit only when a limit is set (> 0) and exposure exceeds it (equal is allowed)."""
    limit = _dec(limit, "limit")
    exposure = (
        _dec(posted_receivable, "posted_receivable")
        + _dec(uninvoiced_orders, "uninvoiced_orders")
        + _dec(this_order, "this_order")
    )
    return CreditDecision(
        exposure=exposure,
        limit=limit,
        over_limit=limit > 0 and exposure > limit,
        headroom=limit - exposure,
    )


# -------------------------------------------------------------------------------------------- promised dates


def promised_date(
    today: date,
    *,
    requested: Decimal,
    available_now: Decimal,
    incoming: Sequence[tuple[date, Decimal]],
    supplier_lead_days: int | None,
    delivery_days: int = 1,
    security_days: int = 0,
) -> date:
    """Date we promise the customer for one line.

    Ready date: today when stock on hand covers the request; else the date of the incoming receipt at which
    on-hand plus the receipts so far (in date order) covers it; else today + the supplier lead time.
    Promise = ready + delivery_days − security_days, but never earlier than today + delivery_days: the security
    margin makes promises safer, never impossible, and the same floor treats an overdue receipt as due today."""
    need = _dec(requested, "requested")
    covered = _dec(available_now, "available_now")
    ready: date | None = today if covered >= need else None
    if ready is None:
        for arrival, qty in sorted(incoming, key=lambda receipt: receipt[0]):
            covered += _dec(qty, "incoming quantity")
            if covered >= need:
                ready = arrival
                break
    if ready is None:
        ready = today + timedelta(days=supplier_lead_days or 0)
    earliest = today + timedelta(days=delivery_days)
    return max(ready + timedelta(days=delivery_days - security_days), earliest)


def order_promised_date(line_dates: Sequence[date], shipping_policy: str) -> date | None:
    """erp-anchors b4: "direct" (ship as soon as possible) promises the earliest line date, "one" (all at once)
    the latest. No lines → None."""
    if shipping_policy not in (SHIPPING_DIRECT, SHIPPING_ONE):
        raise ValueError(f"unknown shipping policy {shipping_policy!r}; expected 'direct' or 'one'")
    if not line_dates:
        return None
    return min(line_dates) if shipping_policy == SHIPPING_DIRECT else max(line_dates)


# ---------------------------------------------------------------------------------------- shortage, invoicing


@dataclass(frozen=True)
class ShortageSplit:
    ship_now: Decimal
    backorder: Decimal  # requested − ship_now: what stays open after this shipment
    wait: bool  # ship_complete and short: hold the whole line until everything is reserved
    ask: bool  # ask and short: the customer chooses (the split shown is the ship_available default)


def split_shortage(*, requested: Decimal, reserved: Decimal, preference: str) -> ShortageSplit:
    """How much of a line ships now under the customer's backorder preference (Odoo create_backorder, b4)."""
    need = _dec(requested, "requested")
    have = _dec(reserved, "reserved")
    if preference not in (SHIP_AVAILABLE, SHIP_COMPLETE, ASK):
        raise ValueError(f"unknown backorder preference {preference!r}")
    if have >= need:
        return ShortageSplit(ship_now=need, backorder=ZERO, wait=False, ask=False)
    available = max(have, ZERO)
    if preference == SHIP_COMPLETE:
        return ShortageSplit(ship_now=ZERO, backorder=need, wait=True, ask=False)
    return ShortageSplit(
        ship_now=available, backorder=need - available, wait=False, ask=preference == ASK
    )


def invoiceable_quantity(
    *, policy: str, ordered: Decimal, delivered: Decimal, invoiced: Decimal, cancelled: Decimal
) -> Decimal:
    """Quantity of a line to invoice now (as Odoo's qty_to_invoice): "ordered" policy invoices what was ordered
    and not cancelled, "delivered" only what has shipped; less what is already invoiced, never below zero."""
    invoiced = _dec(invoiced, "invoiced")
    if policy == POLICY_ORDERED:
        due = _dec(ordered, "ordered") - _dec(cancelled, "cancelled") - invoiced
    elif policy == POLICY_DELIVERED:
        due = _dec(delivered, "delivered") - invoiced
    else:
        raise ValueError(f"unknown invoice policy {policy!r}; expected 'ordered' or 'delivered'")
    return max(ZERO, due)


def dunning_dates(due_date: date, reminder_days: Sequence[int] = DEFAULT_REMINDER_DAYS) -> tuple[date, ...]:
    """Reminder i goes out at due_date + reminder_days[i]; after the last one the order escalates to a
    collections task. Offsets must be non-negative and strictly increasing, or reminders would go out of order."""
    previous = -1
    for days in reminder_days:
        if days < 0 or days <= previous:
            raise ValueError(f"reminder days must be non-negative and strictly increasing, got {tuple(reminder_days)}")
        previous = days
    return tuple(due_date + timedelta(days=days) for days in reminder_days)
