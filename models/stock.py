"""Stock tables: quants (on hand and reserved), moves, transfers, reservations and valuation layers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.common import MONEY, QTY, UNIT_COST, MoveKind, TransferKind, utcnow


class Lot(SQLModel, table=True):
    __tablename__ = "lot"
    __table_args__ = (UniqueConstraint("product_id", "name", name="lot_unique"),)
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    name: str = Field(max_length=60)
    expiry_date: datetime | None = None


class Quant(SQLModel, table=True):
    """Stock of one product at one location (and lot). Reserved never exceeds on hand: the database says so."""

    __tablename__ = "quant"
    __table_args__ = (
        CheckConstraint("reserved >= 0", name="quant_reserved_nonneg"),
        CheckConstraint("reserved <= quantity", name="quant_reserved_within_on_hand"),
        Index("ix_quant_product_location", "product_id", "location_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id")
    location_id: int = Field(foreign_key="location.id", index=True)
    lot_id: int | None = Field(default=None, foreign_key="lot.id")
    quantity: Decimal = Field(default=Decimal(0), **QTY)
    reserved: Decimal = Field(default=Decimal(0), **QTY)
    # FIFO removal order (erp-anchors b3): oldest in_date first, then id.
    in_date: datetime = Field(default_factory=utcnow)


class Transfer(SQLModel, table=True):
    """A picking: receipt, delivery, internal or return. A backorder points at the transfer it continues."""

    __tablename__ = "transfer"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=30, unique=True)
    kind: TransferKind
    state: str = Field(default="draft", max_length=20, index=True)  # draft, ready, done, cancelled
    warehouse_id: int = Field(foreign_key="warehouse.id", index=True)
    source_location_id: int = Field(foreign_key="location.id")
    dest_location_id: int = Field(foreign_key="location.id")
    origin: str | None = Field(default=None, max_length=60, index=True)  # e.g. SO-000123, PO-000045
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    supplier_id: int | None = Field(default=None, foreign_key="supplier.id")
    backorder_of_id: int | None = Field(default=None, foreign_key="transfer.id")
    scheduled_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class StockMove(SQLModel, table=True):
    """A posted movement of stock. `key` is the natural idempotency key: posting the same key twice posts once."""

    __tablename__ = "stock_move"
    __table_args__ = (CheckConstraint("quantity > 0", name="move_quantity_positive"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True)
    kind: MoveKind
    product_id: int = Field(foreign_key="product.id", index=True)
    quantity: Decimal = Field(**QTY)
    source_location_id: int = Field(foreign_key="location.id")
    dest_location_id: int = Field(foreign_key="location.id")
    lot_id: int | None = Field(default=None, foreign_key="lot.id")
    transfer_id: int | None = Field(default=None, foreign_key="transfer.id", index=True)
    demand_key: str | None = Field(default=None, max_length=120, index=True)
    unit_cost: Decimal = Field(default=Decimal(0), **UNIT_COST)
    value: Decimal = Field(default=Decimal(0), **MONEY)
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    posted_at: datetime = Field(default_factory=utcnow)


class ReservationDemand(SQLModel, table=True):
    """One demand line (an order line, a transfer line) and how much stock it holds. Its row is the lock that
    makes a repeated request for the same line reserve nothing more."""

    __tablename__ = "reservation_demand"
    __table_args__ = (CheckConstraint("reserved >= 0", name="demand_reserved_nonneg"),)
    id: int | None = Field(default=None, primary_key=True)
    demand_key: str = Field(max_length=120, unique=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    warehouse_id: int = Field(foreign_key="warehouse.id")
    requested: Decimal = Field(default=Decimal(0), **QTY)
    reserved: Decimal = Field(default=Decimal(0), **QTY)
    created_at: datetime = Field(default_factory=utcnow)


class Reservation(SQLModel, table=True):
    """The part of a demand held on one quant."""

    __tablename__ = "reservation"
    __table_args__ = (
        UniqueConstraint("demand_id", "quant_id", name="reservation_unique"),
        CheckConstraint("quantity >= 0", name="reservation_quantity_nonneg"),
    )
    id: int | None = Field(default=None, primary_key=True)
    demand_id: int = Field(foreign_key="reservation_demand.id", index=True)
    quant_id: int = Field(foreign_key="quant.id", index=True)
    quantity: Decimal = Field(**QTY)


class ValuationLayer(SQLModel, table=True):
    """A stock valuation layer (Odoo's stock.valuation.layer): incoming layers keep what is left of them so
    FIFO can consume the oldest first; outgoing layers carry negative quantity and value."""

    __tablename__ = "valuation_layer"
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    move_id: int | None = Field(default=None, foreign_key="stock_move.id", index=True)
    quantity: Decimal = Field(**QTY)
    unit_cost: Decimal = Field(**UNIT_COST)
    value: Decimal = Field(**MONEY)
    remaining_qty: Decimal = Field(default=Decimal(0), **QTY)
    remaining_value: Decimal = Field(default=Decimal(0), **MONEY)
    description: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
