"""The two operations stock rests on, reserve and move, plus the stock levels read model.

Both must stay right under concurrency and retries:
- PostgreSQL: a demand row locked FOR UPDATE serialises repeats of one demand line; quants are taken with a
  conditional `UPDATE ... WHERE quantity - reserved >= :q` (row lock, no oversell; the pattern measured fastest
  in reference/perf-reliability-anchors.md b.7), falling back to a locked re-read when another writer got there
  first.
- SQLite: every transaction begins IMMEDIATE (models/db.py), so a transaction that reaches here holds the single
  write lock; arithmetic is done in Decimal and absolute values are written, because SQLite would do it in
  binary floating point.
Both functions flush and never commit: the caller's transaction makes the whole operation atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from functools import lru_cache

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.accounting import LineSpec, known_account_ids, post_entry
from models.common import ZERO, LocationUsage, MoveKind, money, qty, utcnow
from models.db import insert_if_absent
from models.ledger import JournalEntry
from models.masterdata import Account, Location, Product, ProductCategory, Warehouse
from models.stock import Quant, Reservation, ReservationDemand, StockMove, ValuationLayer

# Locations whose stock the company owns: moving stock between them changes no valuation.
OWNED_USAGES = frozenset(
    {LocationUsage.internal, LocationUsage.input, LocationUsage.quarantine, LocationUsage.transit}
)
UNIT_COST_STEP = Decimal("0.0001")

# Default account codes (Anglo-Saxon interim accounts, erp-anchors b10) when a category names none.
DEFAULT_ACCOUNTS = {
    "valuation": "1200",
    "stock_input": "1210",
    "stock_output": "1220",
    "adjustment": "5100",
}


class StockError(ValueError):
    """A stock operation that cannot be done as asked; the message says why."""


class InsufficientStock(StockError):
    pass


# ---------------------------------------------------------------------------------------------- read model


@dataclass(frozen=True)
class StockLevel:
    product_id: int
    sku: str
    product_name: str
    warehouse_id: int
    warehouse_code: str
    on_hand: Decimal
    reserved: Decimal
    available: Decimal


def stock_levels(
    session: Session,
    *,
    product_id: int | None = None,
    warehouse_id: int | None = None,
    sku: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[StockLevel], int]:
    """On hand, reserved and available per product and warehouse (internal locations only), and the total
    number of such rows for paging. `sku` matches a prefix of the SKU or any part of the product name."""
    on_hand = func.sum(Quant.quantity)
    reserved = func.sum(Quant.reserved)
    filters = [Location.usage == LocationUsage.internal]
    if product_id is not None:
        filters.append(Quant.product_id == product_id)
    if warehouse_id is not None:
        filters.append(Location.warehouse_id == warehouse_id)
    if sku:
        like = sku.strip()
        filters.append((Product.sku.startswith(like)) | (Product.name.icontains(like)))
    grouped = (
        select(
            Product.id,
            Product.sku,
            Product.name,
            Warehouse.id.label("warehouse_id"),
            Warehouse.code,
            on_hand.label("on_hand"),
            reserved.label("reserved"),
        )
        .select_from(Quant)
        .join(Product, Product.id == Quant.product_id)
        .join(Location, Location.id == Quant.location_id)
        .join(Warehouse, Warehouse.id == Location.warehouse_id)
        .where(and_(*filters))
        .group_by(Product.id, Product.sku, Product.name, Warehouse.id, Warehouse.code)
    )
    total = session.scalar(select(func.count()).select_from(grouped.subquery())) or 0
    rows = session.execute(grouped.order_by(Product.sku, Warehouse.code).offset(offset).limit(limit)).all()
    levels = []
    for pid, psku, pname, wid, wcode, oh, rs in rows:
        oh, rs = qty(oh or 0), qty(rs or 0)
        levels.append(StockLevel(pid, psku, pname, wid, wcode, oh, rs, oh - rs))
    return levels, total


# ---------------------------------------------------------------------------------------------- reserve


@dataclass(frozen=True)
class ReserveResult:
    demand_key: str
    requested: Decimal
    reserved: Decimal  # held for the demand now, in total
    newly_reserved: Decimal  # what this call added

    @property
    def shortfall(self) -> Decimal:
        return max(self.requested - self.reserved, ZERO)


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def reserve(
    session: Session, *, demand_key: str, product_id: int, warehouse_id: int, quantity: Decimal,
    known: bool = False,
) -> ReserveResult:
    """Reserve up to `quantity` for the demand line from the warehouse's available stock, oldest stock first.

    The demand holds at most `quantity` in total: repeating the same request reserves nothing more, and a
    later call with a larger quantity tops the demand up from what has become available.

    Runs prebuilt Core statements on the session's connection: this is the hot path of every order line,
    and building statements and the ORM unit of work cost more than the database time (bench/reservations.py).
    `known=True`: the caller read both ids from rows whose foreign keys guarantee them (an order line and its
    order), so the existence check that gives a stranger's bad id a clear refusal is skipped."""
    quantity = qty(quantity)
    if quantity <= 0:
        raise StockError("quantity to reserve must be positive")
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    sql = _reserve_statements(conn.dialect.name)
    if not known:
        found_product, found_warehouse = conn.execute(sql.exists, {"p": product_id, "w": warehouse_id}).one()
        if found_product is None:
            raise StockError(f"unknown product id {product_id}")
        if found_warehouse is None:
            raise StockError(f"unknown warehouse id {warehouse_id}")

    # Insert the demand row or lock the existing one in one statement: an upsert that touches the row holds
    # its lock to the end of the transaction, so repeats of one demand line queue behind each other.
    demand_id, demand_product, demand_warehouse, requested, held = conn.execute(
        sql.lock_demand,
        {"key": demand_key, "p": product_id, "w": warehouse_id, "zero": ZERO, "now": utcnow()},
    ).one()
    if (demand_product, demand_warehouse) != (product_id, warehouse_id):
        raise StockError(f"demand {demand_key} is for another product or warehouse")
    requested, held = max(qty(requested), quantity), qty(held)
    missing = quantity - held
    added = ZERO
    if missing > 0:
        candidates = conn.execute(sql.candidates, {"p": product_id, "w": warehouse_id}).all()
        for quant_id, on_hand, already in candidates:
            taken = _take_from_quant(conn, pg, sql, quant_id, qty(on_hand), qty(already), missing)
            if taken <= 0:
                continue
            conn.execute(sql.add_reservation, {"d": demand_id, "q": quant_id, "amount": taken})
            added += taken
            missing -= taken
            if missing <= 0:
                break
    conn.execute(sql.set_demand, {"did": demand_id, "new_requested": requested, "new_reserved": held + added})
    return ReserveResult(demand_key, requested, held + added, added)


@dataclass(frozen=True)
class _ReserveSql:
    exists: object
    lock_demand: object
    candidates: object
    take_exact: object
    take_if_available: object
    take_more: object
    lock_left: object
    add_reservation: object
    set_demand: object


@lru_cache(maxsize=4)
def _reserve_statements(dialect_name: str) -> _ReserveSql:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    quant, location = Quant.__table__, Location.__table__
    demand, reservation = ReservationDemand.__table__, Reservation.__table__
    upsert_demand = dialect.insert(demand).values(
        demand_key=bindparam("key"),
        product_id=bindparam("p"),
        warehouse_id=bindparam("w"),
        requested=bindparam("zero"),
        reserved=bindparam("zero"),
        created_at=bindparam("now"),
    )
    add = dialect.insert(reservation).values(
        demand_id=bindparam("d"), quant_id=bindparam("q"), quantity=bindparam("amount")
    )
    return _ReserveSql(
        exists=select(
            select(Product.id).where(Product.id == bindparam("p")).scalar_subquery(),
            select(Warehouse.id).where(Warehouse.id == bindparam("w")).scalar_subquery(),
        ),
        lock_demand=upsert_demand.on_conflict_do_update(
            index_elements=["demand_key"], set_={"demand_key": bindparam("key")}
        ).returning(demand.c.id, demand.c.product_id, demand.c.warehouse_id, demand.c.requested, demand.c.reserved),
        candidates=select(quant.c.id, quant.c.quantity, quant.c.reserved)
        .join(location, location.c.id == quant.c.location_id)
        .where(
            quant.c.product_id == bindparam("p"),
            location.c.warehouse_id == bindparam("w"),
            location.c.usage == LocationUsage.internal.name,
            quant.c.quantity > quant.c.reserved,
        )
        .order_by(quant.c.in_date, quant.c.id),
        take_exact=update(quant).where(quant.c.id == bindparam("q")).values(reserved=bindparam("new_reserved")),
        take_if_available=update(quant)
        .where(quant.c.id == bindparam("q"), quant.c.quantity - quant.c.reserved >= bindparam("take"))
        .values(reserved=quant.c.reserved + bindparam("take")),
        take_more=update(quant).where(quant.c.id == bindparam("q")).values(
            reserved=quant.c.reserved + bindparam("take")
        ),
        lock_left=select(quant.c.quantity - quant.c.reserved).where(quant.c.id == bindparam("q")).with_for_update(),
        add_reservation=add.on_conflict_do_update(
            index_elements=["demand_id", "quant_id"],
            set_={"quantity": reservation.c.quantity + bindparam("amount")},
        ),
        set_demand=update(demand)
        .where(demand.c.id == bindparam("did"))
        .values(requested=bindparam("new_requested"), reserved=bindparam("new_reserved")),
    )


def _take_from_quant(
    conn, pg: bool, sql: _ReserveSql, quant_id: int, on_hand: Decimal, already: Decimal, want: Decimal
) -> Decimal:
    """Reserve up to `want` on one quant; returns what was taken (zero if another writer took it all)."""
    take = min(on_hand - already, want)
    if not pg:
        # SQLite: this transaction holds the database's write lock, so what we read is still true. Write the
        # Decimal result, not `reserved + :take`: SQLite would add in binary floating point and could then
        # fail the reserved <= quantity check by a rounding error.
        if take > 0:
            conn.execute(sql.take_exact, {"q": quant_id, "new_reserved": already + take})
        return max(take, ZERO)
    if conn.execute(sql.take_if_available, {"q": quant_id, "take": take}).rowcount == 1:
        return take
    # Another writer got there first: lock the row, read what is left and take that.
    left = conn.execute(sql.lock_left, {"q": quant_id}).scalar_one()
    take = min(qty(left), want)
    if take <= 0:
        return ZERO
    conn.execute(sql.take_more, {"q": quant_id, "take": take})
    return take


def release(session: Session, *, demand_key: str, quantity: Decimal | None = None) -> Decimal:
    """Give back a demand's reservation (all of it, or `quantity`), newest stock first; returns what was
    released. Releasing an unknown or empty demand releases nothing, so a retried release is harmless."""
    demand = session.execute(
        select(ReservationDemand)
        .where(ReservationDemand.demand_key == demand_key)
        .execution_options(populate_existing=True)
        .with_for_update()
    ).scalar_one_or_none()
    if demand is None:
        return ZERO
    to_release = qty(demand.reserved) if quantity is None else min(qty(quantity), qty(demand.reserved))
    released = _unreserve(session, demand, to_release)
    if quantity is None:
        demand.requested = ZERO
    session.flush()
    return released


def _unreserve(session: Session, demand: ReservationDemand, amount: Decimal) -> Decimal:
    quant = Quant.__table__
    released = ZERO
    rows = session.execute(
        select(Reservation, Quant.in_date)
        .join(Quant, Quant.id == Reservation.quant_id)
        .where(Reservation.demand_id == demand.id, Reservation.quantity > 0)
        .order_by(Quant.in_date.desc(), Quant.id.desc())
    ).all()
    for res, _ in rows:
        if released >= amount:
            break
        part = min(qty(res.quantity), amount - released)
        held = qty(session.execute(select(quant.c.reserved).where(quant.c.id == res.quant_id).with_for_update()).scalar_one())
        session.execute(update(quant).where(quant.c.id == res.quant_id).values(reserved=held - part))
        res.quantity = qty(res.quantity) - part
        session.add(res)
        released += part
    demand.reserved = qty(demand.reserved) - released
    session.add(demand)
    return released


# ---------------------------------------------------------------------------------------------- moves


@dataclass(frozen=True)
class MoveRequest:
    key: str  # natural key, e.g. "SO-000123/1/ship-1" or "PO-000045/2/receipt"
    product_id: int
    quantity: Decimal
    source_location_id: int
    dest_location_id: int
    unit_cost: Decimal | None = None  # incoming stock at this cost (receipts); defaults to the product cost
    demand_key: str | None = None  # an outgoing move consumes this demand's reservation first
    transfer_id: int | None = None
    move_date: date | None = None
    customer_id: int | None = None
    supplier_id: int | None = None


@dataclass(frozen=True)
class MoveResult:
    move_id: int
    key: str
    kind: MoveKind
    value: Decimal
    journal_entry_id: int | None
    already_posted: bool
    # What the move's demand still holds reserved after it (None: no demand key, or the move was already posted):
    # the caller that mirrors it on an order line need not read the demand again.
    demand_reserved: Decimal | None = None


def post_move(session: Session, request: MoveRequest, *, account_memo: dict | None = None) -> MoveResult:
    """Post a stock move: quants, valuation layers and the journal, in the caller's transaction. Posting the
    same key again returns the move already posted and changes nothing. `account_memo`: see category_accounts
    (a caller posting several moves in one call passes one dict to all of them)."""
    amount = qty(request.quantity)
    if amount <= 0:
        raise StockError("move quantity must be positive")
    product = session.get(Product, request.product_id)
    if product is None:
        raise StockError(f"unknown product id {request.product_id}")
    source = session.get(Location, request.source_location_id)
    dest = session.get(Location, request.dest_location_id)
    if source is None or dest is None:
        raise StockError("unknown source or destination location")
    if source.id == dest.id:
        raise StockError("source and destination are the same location")
    for loc in (source, dest):
        if loc.usage == LocationUsage.view:
            raise StockError(f"{loc.full_name} is a view location and holds no stock; choose a stock location or bin")
    kind = _move_kind(source, dest)

    # Claim the key first: on SQLite this is the first write (the transaction already holds the lock); on
    # PostgreSQL a concurrent duplicate waits on the unique index and then finds the committed move.
    claimed_id = insert_if_absent(
        session,
        StockMove.__table__,
        {
            "key": request.key,
            "kind": kind,
            "product_id": product.id,
            "quantity": amount,
            "source_location_id": source.id,
            "dest_location_id": dest.id,
            "transfer_id": request.transfer_id,
            "demand_key": request.demand_key,
            "unit_cost": ZERO,
            "value": ZERO,
            "posted_at": utcnow(),
        },
        "key",
    )
    if claimed_id is None:
        move = session.execute(
            select(StockMove).where(StockMove.key == request.key).execution_options(populate_existing=True)
        ).scalar_one()
        if (move.product_id, qty(move.quantity), move.source_location_id, move.dest_location_id) != (
            product.id,
            amount,
            source.id,
            dest.id,
        ):
            raise StockError(f"move key {request.key} was already used for a different move")
        return MoveResult(move.id, move.key, move.kind, money(move.value), move.journal_entry_id, True)
    # The row was just written from these values: what the valuation needs of it is known without reading it back.
    move = _NewMove(claimed_id, request.key, kind)

    demand_reserved = None
    if source.usage in OWNED_USAGES:
        demand_reserved = _remove_stock(session, product.id, source, amount, request.demand_key)
    if dest.usage in OWNED_USAGES:
        _add_stock(session, product.id, dest.id, amount)

    value, unit_cost = ZERO, ZERO
    incoming = source.usage not in OWNED_USAGES and dest.usage in OWNED_USAGES
    outgoing = source.usage in OWNED_USAGES and dest.usage not in OWNED_USAGES
    if incoming:
        value, unit_cost = _value_in(session, product, move, amount, request.unit_cost)
    elif outgoing:
        value, unit_cost = _value_out(session, product, move, amount)
    journal_entry_id = None
    if value != ZERO:
        debit, credit = _accounts_for(session, product, kind, incoming, account_memo)
        entry = post_entry(
            session,
            source_key=f"move:{request.key}",
            entry_date=request.move_date or utcnow().date(),
            journal="stock",
            memo=f"{kind.value} {amount} x {product.sku}",
            lines=[
                LineSpec(debit, debit=value, label=product.sku, supplier_id=request.supplier_id,
                         customer_id=request.customer_id),
                LineSpec(credit, credit=value, label=product.sku, supplier_id=request.supplier_id,
                         customer_id=request.customer_id),
            ],
        )
        journal_entry_id = entry.id
    # One UPDATE for what the move learnt (ORM objects of this move are not in the session: it was never loaded).
    session.execute(
        update(StockMove.__table__)
        .where(StockMove.__table__.c.id == move.id)
        .values(value=value, unit_cost=unit_cost, journal_entry_id=journal_entry_id)
    )
    session.flush()
    return MoveResult(move.id, move.key, kind, value, journal_entry_id, False, demand_reserved)


@dataclass(frozen=True)
class _NewMove:
    """The fields of a just-inserted stock move that valuation reads (id for its layers, kind and key to label)."""

    id: int
    key: str
    kind: MoveKind


def _move_kind(source: Location, dest: Location) -> MoveKind:
    s, d = source.usage, dest.usage
    if s == LocationUsage.supplier and d in OWNED_USAGES:
        return MoveKind.receipt
    if s in OWNED_USAGES and d == LocationUsage.customer:
        return MoveKind.delivery
    if s == LocationUsage.customer and d in OWNED_USAGES:
        return MoveKind.customer_return
    if s in OWNED_USAGES and d == LocationUsage.supplier:
        return MoveKind.supplier_return
    if s in OWNED_USAGES and d in OWNED_USAGES:
        return MoveKind.internal
    loss = (LocationUsage.inventory_loss, LocationUsage.scrap)
    if (s in loss and d in OWNED_USAGES) or (s in OWNED_USAGES and d in loss):
        return MoveKind.adjustment
    raise StockError(f"no stock move goes from a {s.value} location to a {d.value} location")


def _subtree(location: Location):
    # A move from "NBG/Stock" may take stock from any bin below it.
    return Location.path.startswith(location.path)


def _remove_stock(session: Session, product_id: int, source: Location, amount: Decimal,
                  demand_key: str | None) -> Decimal | None:
    """Take `amount` out of `source`'s subtree: the demand's own reservation first, then unreserved stock.
    Returns what the demand still holds reserved afterwards (None without a demand key)."""
    quant = Quant.__table__
    left = amount
    demand_left = None
    if demand_key:
        demand = session.execute(
            select(ReservationDemand)
            .where(ReservationDemand.demand_key == demand_key)
            .execution_options(populate_existing=True)
            .with_for_update()
        ).scalar_one_or_none()
        if demand is not None and demand.product_id != product_id:
            raise StockError(f"demand {demand_key} is for another product")
        if demand is not None and qty(demand.reserved) > 0:
            # Consume the demand's own reservation first: those units leave on hand and reserved together.
            rows = session.execute(
                select(Reservation)
                .join(Quant, Quant.id == Reservation.quant_id)
                .join(Location, Location.id == Quant.location_id)
                .where(Reservation.demand_id == demand.id, Reservation.quantity > 0, _subtree(source))
                .order_by(Quant.in_date, Quant.id)
            ).scalars().all()
            used = ZERO
            for res in rows:
                if left <= 0:
                    break
                part = min(qty(res.quantity), left)
                on_hand, held = session.execute(
                    select(quant.c.quantity, quant.c.reserved).where(quant.c.id == res.quant_id).with_for_update()
                ).one()
                session.execute(
                    update(quant)
                    .where(quant.c.id == res.quant_id)
                    .values(quantity=qty(on_hand) - part, reserved=qty(held) - part)
                )
                res.quantity = qty(res.quantity) - part
                session.add(res)
                used += part
                left -= part
            demand.reserved = qty(demand.reserved) - used
            session.add(demand)
        demand_left = qty(demand.reserved) if demand is not None else ZERO
    if left <= 0:
        return demand_left
    # The rest comes from unreserved stock, oldest first; reserved stock of other demands is never taken.
    rows = session.execute(
        select(quant.c.id)
        .join(Location.__table__, Location.id == quant.c.location_id)
        .where(quant.c.product_id == product_id, _subtree(source), quant.c.quantity > quant.c.reserved)
        .order_by(quant.c.in_date, quant.c.id)
        .with_for_update(of=quant)
    ).scalars().all()
    for quant_id in rows:
        on_hand, held = session.execute(
            select(quant.c.quantity, quant.c.reserved).where(quant.c.id == quant_id)
        ).one()
        part = min(qty(on_hand) - qty(held), left)
        if part <= 0:
            continue
        session.execute(update(quant).where(quant.c.id == quant_id).values(quantity=qty(on_hand) - part))
        left -= part
        if left <= 0:
            return demand_left
    raise InsufficientStock(
        f"not enough unreserved stock of product {product_id} in {source.full_name}: {left} short"
    )


def _add_stock(session: Session, product_id: int, location_id: int, amount: Decimal) -> None:
    quant = Quant.__table__
    existing = session.execute(
        select(quant.c.id, quant.c.quantity)
        .where(quant.c.product_id == product_id, quant.c.location_id == location_id, quant.c.lot_id.is_(None))
        .order_by(quant.c.id)
        .limit(1)
        .with_for_update()
    ).first()
    if existing is None:
        session.execute(
            quant.insert().values(
                product_id=product_id, location_id=location_id, quantity=amount, reserved=ZERO, in_date=utcnow()
            )
        )
    else:
        session.execute(update(quant).where(quant.c.id == existing.id).values(quantity=qty(existing.quantity) + amount))


def _value_in(session, product: Product, move: StockMove, amount: Decimal, unit_cost: Decimal | None):
    if product.valuation == "standard" or unit_cost is None:
        unit_cost = Decimal(product.standard_cost)
    unit_cost = Decimal(unit_cost).quantize(UNIT_COST_STEP)
    if unit_cost < 0:
        raise StockError("unit cost cannot be negative")
    value = money(amount * unit_cost)
    if product.valuation == "avco":
        on_hand_qty = qty(
            session.scalar(select(func.coalesce(func.sum(ValuationLayer.remaining_qty), 0)).where(
                ValuationLayer.product_id == product.id
            ))
        )
        old_value = on_hand_qty * Decimal(product.standard_cost)
        product.standard_cost = ((old_value + value) / (on_hand_qty + amount)).quantize(UNIT_COST_STEP)
        session.add(product)
    session.add(
        ValuationLayer(
            product_id=product.id,
            move_id=move.id,
            quantity=amount,
            unit_cost=unit_cost,
            value=value,
            remaining_qty=amount,
            remaining_value=value,
            description=f"{move.kind} {move.key}",
        )
    )
    return value, unit_cost


def _value_out(session, product: Product, move: StockMove, amount: Decimal):
    """FIFO takes the value of the oldest layers; AVCO and standard take quantity x current cost. Every method
    draws the quantity down from the oldest layers, so `remaining_qty` always says what is left in stock."""
    layers = session.execute(
        select(ValuationLayer)
        .where(ValuationLayer.product_id == product.id, ValuationLayer.remaining_qty > 0)
        .order_by(ValuationLayer.created_at, ValuationLayer.id)
        .with_for_update()
    ).scalars().all()
    fifo = product.valuation == "fifo"
    cost = Decimal(product.standard_cost)
    left, value = amount, ZERO
    for layer in layers:
        if left <= 0:
            break
        take = min(qty(layer.remaining_qty), left)
        if take == qty(layer.remaining_qty):
            piece = money(layer.remaining_value) if fifo else money(take * cost)
        else:
            piece = money(Decimal(layer.remaining_value) * take / Decimal(layer.remaining_qty)) if fifo else money(
                take * cost
            )
        layer.remaining_qty = qty(layer.remaining_qty) - take
        layer.remaining_value = max(money(layer.remaining_value) - piece, ZERO) if layer.remaining_qty else ZERO
        session.add(layer)
        value += piece
        left -= take
    if left > 0:
        # Stock that came in without a layer (should not happen); value it at the product's cost.
        value += money(left * cost)
    if not fifo:
        value = money(amount * cost)
    unit_cost = (value / amount).quantize(UNIT_COST_STEP)
    session.add(
        ValuationLayer(
            product_id=product.id,
            move_id=move.id,
            quantity=-amount,
            unit_cost=unit_cost,
            value=-value,
            description=f"{move.kind} {move.key}",
        )
    )
    return value, unit_cost


# Every account a product category may name: read together, so one walk up the path serves any posting.
CATEGORY_ACCOUNT_ATTRS = ("valuation_account_id", "stock_input_account_id", "stock_output_account_id",
                          "income_account_id", "expense_account_id")


def category_accounts(session: Session, category_id: int | None, memo: dict | None = None) -> dict[str, str]:
    """attr -> account code (CATEGORY_ACCOUNT_ATTRS) of the nearest category up the path that names one (attrs no
    category names are left out). The path is walked once for all attrs and the codes read in one query.
    `memo` (category id -> result) is the caller's, for one call: a shipment of three lines asks once."""
    if memo is not None and category_id in memo:
        return memo[category_id]
    key, attrs = category_id, CATEGORY_ACCOUNT_ATTRS
    found: dict[str, int] = {}
    seen = 0
    while category_id is not None and seen < 20 and len(found) < len(attrs):
        category = session.get(ProductCategory, category_id)
        if category is None:
            break
        for attr in attrs:
            if attr not in found and getattr(category, attr) is not None:
                found[attr] = getattr(category, attr)
        category_id = category.parent_id
        seen += 1
    result: dict[str, str] = {}
    if found:
        codes = dict(session.execute(select(Account.id, Account.code)
                                     .where(Account.id.in_(set(found.values())))).all())
        result = {attr: codes[account_id] for attr, account_id in found.items()}
        known_account_ids(session).update({code: account_id for account_id, code in codes.items()})
    if memo is not None:
        memo[key] = result
    return result


def _accounts_for(session: Session, product: Product, kind: MoveKind, incoming: bool,
                  memo: dict | None = None) -> tuple[str, str]:
    """(debit, credit) account codes for a valued move, the Anglo-Saxon pairs of erp-anchors b10."""
    codes = category_accounts(session, product.category_id, memo)

    def acct(attr: str, role: str) -> str:
        return codes.get(attr) or DEFAULT_ACCOUNTS[role]

    valuation = acct("valuation_account_id", "valuation")
    if kind in (MoveKind.receipt, MoveKind.supplier_return):
        counterpart = acct("stock_input_account_id", "stock_input")
    elif kind in (MoveKind.delivery, MoveKind.customer_return):
        counterpart = acct("stock_output_account_id", "stock_output")
    else:
        counterpart = DEFAULT_ACCOUNTS["adjustment"]
    return (valuation, counterpart) if incoming else (counterpart, valuation)


def journal_entry_for_move(session: Session, key: str) -> JournalEntry | None:
    return session.scalar(select(JournalEntry).where(JournalEntry.source_key == f"move:{key}"))
