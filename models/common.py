"""Shared column shapes and enums. Money and quantities are Decimal end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlmodel import Field

MONEY = {"max_digits": 16, "decimal_places": 2}
QTY = {"max_digits": 16, "decimal_places": 3}
UNIT_COST = {"max_digits": 18, "decimal_places": 4}
RATIO = {"max_digits": 12, "decimal_places": 6}
PERCENT = {"max_digits": 7, "decimal_places": 3}

ZERO = Decimal("0")
CENT = Decimal("0.01")
MILLI = Decimal("0.001")


def utcnow() -> datetime:
    # SQLModel stores datetimes as UTC and refuses naive ones, so every timestamp we make is aware.
    return datetime.now(UTC)


def money(value: Any) -> Decimal:
    """Round to cents the way accountants expect (half up), from any numeric the database hands back."""
    return Decimal(str(value)).quantize(CENT, rounding="ROUND_HALF_UP")


def qty(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(MILLI, rounding="ROUND_HALF_UP")


def money_field(default: Decimal | None = ZERO, **kw: Any) -> Any:
    return Field(default=default, **MONEY, **kw)


def qty_field(default: Decimal | None = ZERO, **kw: Any) -> Any:
    return Field(default=default, **QTY, **kw)


class ValuationMethod(StrEnum):
    fifo = "fifo"
    avco = "avco"
    standard = "standard"


class LocationUsage(StrEnum):
    view = "view"            # a grouping node (the warehouse root); holds no stock itself
    internal = "internal"    # stock and bins: stock we own and can sell
    input = "input"          # goods received, not yet put away
    quarantine = "quarantine"  # held for inbound inspection
    customer = "customer"
    supplier = "supplier"
    transit = "transit"
    inventory_loss = "inventory_loss"
    scrap = "scrap"


class BackorderPreference(StrEnum):
    ship_available = "ship_available"  # ship what is there now, backorder the rest
    ship_complete = "ship_complete"    # wait and ship everything at once
    ask = "ask"                        # ask the customer, default applies after a deadline


class InvoicePolicy(StrEnum):
    ordered = "ordered"
    delivered = "delivered"


class AccountType(StrEnum):
    asset = "asset"
    receivable = "receivable"
    liability = "liability"
    payable = "payable"
    equity = "equity"
    income = "income"
    expense = "expense"


class PricelistRuleKind(StrEnum):
    fixed = "fixed"
    discount = "discount"
    formula = "formula"


class TransferKind(StrEnum):
    receipt = "receipt"
    delivery = "delivery"
    internal = "internal"
    return_ = "return"


class MoveKind(StrEnum):
    receipt = "receipt"
    delivery = "delivery"
    internal = "internal"
    adjustment = "adjustment"
    customer_return = "customer_return"
    supplier_return = "supplier_return"
