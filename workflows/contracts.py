"""Payloads that cross the Temporal boundary: frozen dataclasses of stdlib types (Decimal for money and
quantities), carried by the pydantic data converter. Workflow-id helpers live here too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class ReserveStockInput:
    demand_key: str
    product_id: int
    warehouse_id: int
    quantity: Decimal


@dataclass(frozen=True)
class ReserveStockResult:
    demand_key: str
    requested: Decimal
    reserved: Decimal
    newly_reserved: Decimal
    shortfall: Decimal


@dataclass(frozen=True)
class ReleaseReservationInput:
    demand_key: str
    quantity: Decimal | None = None  # None releases all of it


@dataclass(frozen=True)
class ReleaseReservationResult:
    demand_key: str
    released: Decimal


@dataclass(frozen=True)
class PostStockMoveInput:
    key: str
    product_id: int
    quantity: Decimal
    source_location_id: int
    dest_location_id: int
    unit_cost: Decimal | None = None
    demand_key: str | None = None
    move_date: date | None = None
    customer_id: int | None = None
    supplier_id: int | None = None


@dataclass(frozen=True)
class PostStockMoveResult:
    move_id: int
    key: str
    kind: str
    value: Decimal
    journal_entry_id: int | None
    already_posted: bool


def q2c_id(quote_number: str) -> str:
    return f"q2c:{quote_number}"


def p2p_id(order_number: str) -> str:
    return f"p2p:{order_number}"


def rma_id(rma_number: str) -> str:
    return f"rma:{rma_number}"
