"""Purchase orders (models/purchasing.py) made inside quote to cash: drop-ship lines ordered from their suppliers
when their shipment is made, received and valued when it ships, cancelled with the order; reservation shortfalls
collected on one draft request for quotation per supplier and warehouse; on SQLite, and on PostgreSQL where
concurrent reservations meet on one draft.

The sales world (tests/sales_world.py) sells DROP-400 (cost 150.00, none on hand), SCARCE-300 (5 on hand, cost
60.00), CAB-100 (100 on hand) and LAMP-200 (20 on hand); each test adds the suppliers and offers it needs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.masterdata import ReorderRule, Supplier, SupplierOffer
from models.common import utcnow
from models.purchasing import PurchaseOrder, PurchaseOrderLine, SupplierChoice, choose_supplier
from models.records import AuditEvent
from models.sales import CustomerInvoiceLine, ShipmentLine
from models.stock import StockMove, ValuationLayer
from tests.data.test_orders import (
    TODAY,
    balances,
    books_balance,
    confirm,
    line,
    order_lines,
    quant_totals,
    quote,
    read,
    run,
    ship,
)
from tests.sales_world import CABLE, DROP, LAMP, SCARCE, SalesWorld, build_sales_world_in


# Reservation has no business date of its own: a request for quotation is dated the day it is made.
ORDER_DAY = utcnow().date()


@pytest.fixture
def lite(engine) -> tuple:
    return engine, build_sales_world_in(engine)


def add_supplier(engine, code: str, *, lead: int = 7, active: bool = True,
                 offers: tuple[tuple[int, str, str, int], ...] = ()) -> int:
    """A supplier with offers (product id, price, min qty, lead time days); its id."""
    with Session(engine) as s, s.begin():
        supplier = Supplier(code=code, name=f"Supplier {code}", default_lead_time_days=lead, active=active)
        s.add(supplier)
        s.flush()
        s.add_all(SupplierOffer(supplier_id=supplier.id, product_id=p, price=D(price), min_qty=D(min_qty),
                                lead_time_days=days) for p, price, min_qty, days in offers)
        return supplier.id


def purchase_orders(engine) -> list[tuple[PurchaseOrder, list[PurchaseOrderLine]]]:
    with Session(engine) as s:
        found = []
        for po in s.scalars(select(PurchaseOrder).order_by(PurchaseOrder.id)):
            lines = list(s.scalars(select(PurchaseOrderLine).where(PurchaseOrderLine.order_id == po.id)
                                   .order_by(PurchaseOrderLine.line_no)))
            found.append((po, lines))
        return found


def stock_snapshot(engine, world: SalesWorld) -> dict:
    """Our warehouse's on hand and reserved per product, and the stock valuation account."""
    snap = {sku: quant_totals(engine, pid) for sku, pid in world.products.items()}
    snap["1200"] = balances(engine, "1200")["1200"]
    return snap


# ------------------------------------------------------------------------------------------------- suppliers


def test_the_supplier_is_the_cheapest_valid_offer_unless_a_reorder_rule_names_one(lite):
    engine, world = lite
    drop = world.product_id(DROP)
    cheap_in_bulk = add_supplier(engine, "S-BULK", offers=((drop, "120.00", "10", 14),))
    regular = add_supplier(engine, "S-REG", offers=((drop, "140.00", "1", 5),))
    add_supplier(engine, "S-GONE", active=False, offers=((drop, "90.00", "1", 1),))

    def choose(quantity: str, **kw) -> tuple:
        choice = read(engine, choose_supplier, drop, D(quantity), **kw)
        return (choice.supplier_id, choice.unit_cost, choice.lead_time_days) if choice else None

    # 2 pieces: the bulk offer needs 10 and the cheapest supplier is inactive, so the regular offer wins.
    assert choose("2") == (regular, D("140.0000"), 5)
    assert choose("10") == (cheap_in_bulk, D("120.0000"), 14)
    # A reorder rule's supplier is the buyer's choice; below its offer's minimum it is priced at product cost
    # with the supplier's default lead time.
    with Session(engine) as s, s.begin():
        s.add(ReorderRule(product_id=drop, warehouse_id=world.warehouse_id, min_qty=D(0), max_qty=D(0),
                          supplier_id=cheap_in_bulk))
    assert choose("2", warehouse_id=world.warehouse_id) == (cheap_in_bulk, D("150.0000"), 7)
    assert choose("2") == (regular, D("140.0000"), 5)  # no warehouse (drop-ship): the rule does not apply
    assert read(engine, choose_supplier, world.product_id(LAMP), D("1")) is None  # nobody sells lamps
    assert isinstance(read(engine, choose_supplier, drop, D("2")), SupplierChoice)


# ------------------------------------------------------------------------------------------------- drop-ship


def test_a_drop_ship_shipment_orders_each_supplier_once_delivered_to_the_customer(lite):
    engine, world = lite
    drop, lamp, cable = world.product_id(DROP), world.product_id(LAMP), world.product_id(CABLE)
    elx = add_supplier(engine, "S-ELX", offers=((drop, "140.00", "1", 5), (drop, "130.00", "5", 5),
                                                (cable, "5.50", "1", 3)))
    light = add_supplier(engine, "S-LUX", offers=((lamp, "27.50", "1", 12),))
    number = quote(engine, line(DROP, "2", drop_ship=True), line(LAMP, "3", drop_ship=True),
                   line(CABLE, "4", drop_ship=True))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    assert shipment.drop_ship
    # The activity retried: the shipment comes back as it was, and nothing more is ordered.
    assert run(engine, orders.create_shipment, number, 1, today=TODAY) == shipment

    pos = purchase_orders(engine)
    assert [(po.number, po.supplier_id, po.state, po.origin, po.expected_date) for po, _ in pos] == [
        ("PO-000001", elx, "confirmed", number, TODAY + timedelta(days=5)),  # the longer lead of its two lines
        ("PO-000002", light, "confirmed", number, TODAY + timedelta(days=12)),
    ]
    by_sku = order_lines(engine, number)
    for po, _ in pos:
        assert (po.dest_customer_id, po.dest_warehouse_id, po.confirmed_at is not None) == (
            world.customer_id, None, True)
    # 2 drop items: the 130.00 offer needs 5, so 140.00.
    assert [[(ln.product_id, ln.quantity, ln.unit_cost, ln.qty_received, ln.sales_order_line_id, ln.demand_key)
             for ln in lines] for _, lines in pos] == [
        [(drop, D("2"), D("140.0000"), D("0"), by_sku[DROP].id, f"{shipment.shipment_number}/{by_sku[DROP].id}"),
         (cable, D("4"), D("5.5000"), D("0"), by_sku[CABLE].id, f"{shipment.shipment_number}/{by_sku[CABLE].id}")],
        [(lamp, D("3"), D("27.5000"), D("0"), by_sku[LAMP].id, f"{shipment.shipment_number}/{by_sku[LAMP].id}")],
    ]


def test_shipping_a_drop_ship_receives_the_order_and_posts_cost_at_the_purchase_price(lite):
    engine, world = lite
    supplier = add_supplier(engine, "S-ELX", offers=((world.product_id(DROP), "140.00", "1", 5),))
    number = quote(engine, line(DROP, "2", drop_ship=True))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    before = stock_snapshot(engine, world)
    interim = balances(engine, "1210", "1220", "5000")
    layers = read(engine, lambda s: s.scalar(select(func.count()).select_from(ValuationLayer)))

    ship(engine, shipment.shipment_number)
    # Shipping again (a retried step) changes nothing.
    run(engine, orders.record_shipment_step, shipment.shipment_number, "shipped", actor="walter.warehouse")

    [(po, [po_line])] = purchase_orders(engine)
    assert (po.state, po.received_at is not None, po_line.qty_received) == ("received", True, D("2"))
    drop_line = order_lines(engine, number)[DROP]
    assert drop_line.qty_delivered == D("2")
    with Session(engine) as s:
        move = s.scalars(select(StockMove).where(StockMove.key == f"{shipment.shipment_number}/{drop_line.id}")).one()
        assert (move.kind, move.quantity, move.unit_cost, move.value) == ("delivery", D("2"), D("140.0000"),
                                                                          D("280.00"))
        assert (move.source_location_id, move.dest_location_id) == (world.supplier_location_id,
                                                                     world.customer_location_id)
        assert s.scalars(select(ShipmentLine.move_id).where(ShipmentLine.order_line_id == drop_line.id)).all() == [
            move.id]
        assert s.scalar(select(func.count()).select_from(ValuationLayer)) == layers  # no stock of ours in between
    # Dr stock interim delivered / Cr stock interim received at the purchase price; our stock is untouched.
    assert balances(engine, "1210", "1220", "5000") == {
        "1210": interim["1210"] - D("280.00"), "1220": interim["1220"] + D("280.00"), "5000": interim["5000"]}
    assert stock_snapshot(engine, world) == before
    assert books_balance(engine)

    # The invoice moves that cost from the interim account to cost of goods sold (delivered policy).
    invoice = run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    assert invoice.amount_total == D("476.00")  # 2 × 200.00 + 19 %
    with Session(engine) as s:
        assert s.scalars(select(CustomerInvoiceLine.cost_amount)
                         .where(CustomerInvoiceLine.order_line_id == drop_line.id)).all() == [D("280.00")]
    assert balances(engine, "1220", "5000") == {"1220": interim["1220"], "5000": interim["5000"] + D("280.00")}
    assert books_balance(engine)
    assert po.supplier_id == supplier


def test_a_drop_ship_invoiced_on_order_gets_its_cost_when_it_ships(lite):
    engine, world = lite
    # LAMP is invoiced on order (ordered policy): the invoice comes before the supplier delivers.
    add_supplier(engine, "S-LUX", offers=((world.product_id(LAMP), "27.50", "1", 12),))
    number = quote(engine, line(LAMP, "4", drop_ship=True))
    confirm(engine, number)
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    cogs = balances(engine, "5000")["5000"]
    ship(engine, shipment.shipment_number)
    assert balances(engine, "5000")["5000"] == cogs + D("110.00")  # 4 × 27.50, caught up when it shipped
    assert books_balance(engine)


def test_cancelling_the_order_before_the_drop_ship_shipped_cancels_its_purchase_order(lite):
    engine, world = lite
    add_supplier(engine, "S-ELX", offers=((world.product_id(DROP), "140.00", "1", 5),))
    number = quote(engine, line(DROP, "1", drop_ship=True))
    confirm(engine, number)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    run(engine, orders.cancel_order, number, actor="sam.sales", reason="customer changed their mind", today=TODAY)
    [(po, [po_line])] = purchase_orders(engine)
    assert (po.state, po.cancelled_at is not None, po_line.qty_received) == ("cancelled", True, D("0"))
    with pytest.raises(orders.OrderStateError):
        run(engine, orders.record_shipment_step, shipment.shipment_number, "picked", actor="walter.warehouse")

    # An order whose drop-ship already shipped keeps its received purchase order when cancelled.
    shipped = quote(engine, line(DROP, "1", drop_ship=True))
    confirm(engine, shipped)
    ship(engine, run(engine, orders.create_shipment, shipped, 1, today=TODAY).shipment_number)
    run(engine, orders.cancel_order, shipped, actor="sam.sales", reason="too late", today=TODAY)
    assert [po.state for po, _ in purchase_orders(engine)] == ["cancelled", "received"]


def test_a_drop_ship_line_nobody_sells_ships_as_before_and_is_on_the_audit_trail(lite):
    engine, world = lite
    number = quote(engine, line(DROP, "2", drop_ship=True))
    confirm(engine, number)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, shipment.shipment_number)
    assert purchase_orders(engine) == []
    assert order_lines(engine, number)[DROP].qty_delivered == D("2")
    with Session(engine) as s:
        assert s.scalars(select(StockMove.key).where(StockMove.key.startswith(shipment.shipment_number))).all() == []
        assert s.scalars(select(AuditEvent.reason).where(AuditEvent.action == "purchase.no_supplier")).all() == [
            f"no supplier sells {DROP}: drop-ship line 1 is not ordered"]


# ------------------------------------------------------------------------------------------------- replenishment


def test_shortfalls_go_once_on_one_draft_per_supplier_and_warehouse(lite):
    engine, world = lite
    scarce, cable, lamp = world.product_id(SCARCE), world.product_id(CABLE), world.product_id(LAMP)
    elx = add_supplier(engine, "S-ELX", offers=((scarce, "55.00", "1", 7), (cable, "5.50", "1", 3)))
    lux = add_supplier(engine, "S-LUX", offers=((lamp, "27.50", "1", 12),))

    # 8 SCARCE wanted, 5 on hand: 3 short.
    first = quote(engine, line(SCARCE, "8"), line(CABLE, "10"))
    confirm(engine, first)
    assert run(engine, orders.reserve_order, first).shortfall == D("3")
    run(engine, orders.reserve_order, first)  # the activity retried, or a later attempt: nothing added
    [(draft, [po_line])] = purchase_orders(engine)
    assert (draft.number, draft.state, draft.supplier_id, draft.dest_warehouse_id, draft.dest_customer_id,
            draft.origin, draft.expected_date) == (
        "PO-000001", "draft", elx, world.warehouse_id, None, first, ORDER_DAY + timedelta(days=7))
    assert (po_line.product_id, po_line.quantity, po_line.unit_cost, po_line.demand_key) == (
        scarce, D("3"), D("55.0000"), f"{first}/L1")

    # A second order short of the same supplier's products joins the open draft; another supplier's opens its own.
    second = quote(engine, line(SCARCE, "2"), line(CABLE, "95"), line(LAMP, "25"), customer="C-2000")
    confirm(engine, second)
    assert run(engine, orders.reserve_order, second).shortfall == D("2") + D("5") + D("5")
    pos = purchase_orders(engine)
    assert [(po.supplier_id, po.state, po.origin, po.expected_date) for po, _ in pos] == [
        (elx, "draft", f"{first}, {second}", ORDER_DAY + timedelta(days=7)),
        (lux, "draft", second, ORDER_DAY + timedelta(days=12)),
    ]
    assert [[(ln.line_no, ln.product_id, ln.quantity, ln.demand_key) for ln in lines] for _, lines in pos] == [
        [(1, scarce, D("3"), f"{first}/L1"), (2, scarce, D("2"), f"{second}/L1"), (3, cable, D("5"), f"{second}/L2")],
        [(1, lamp, D("5"), f"{second}/L3")],
    ]
    # Stock that arrives shrinks the shortfall: the request stays as it is for the buyer to trim.
    with Session(engine) as s, s.begin():
        from models.inventory import MoveRequest, post_move

        post_move(s, MoveRequest(key="receipt:scarce", product_id=scarce, quantity=D("2"),
                                 source_location_id=world.supplier_location_id,
                                 dest_location_id=world.stock_location_id, unit_cost=D("55")))
    assert run(engine, orders.reserve_order, first).shortfall == D("1")
    assert [ln.quantity for ln in purchase_orders(engine)[0][1]] == [D("3"), D("2"), D("5")]


def test_a_shortfall_nobody_sells_is_noted_once(lite):
    engine, world = lite
    number = quote(engine, line(SCARCE, "8"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    run(engine, orders.reserve_order, number)
    assert purchase_orders(engine) == []
    with Session(engine) as s:
        assert s.scalars(select(AuditEvent.reason).where(AuditEvent.action == "purchase.no_supplier")).all() == [
            f"no supplier sells {SCARCE}: the shortfall of {number}/L1 is not replenished"]


def test_concurrent_shortfalls_share_one_draft_on_postgresql(pg_engine):
    engine = pg_engine
    world = build_sales_world_in(engine)
    drop, scarce = world.product_id(DROP), world.product_id(SCARCE)
    add_supplier(engine, "S-ELX", offers=((drop, "140.00", "1", 5), (scarce, "55.00", "1", 7)))
    # Every order is short of both (none of DROP-400 on hand, 5 of SCARCE-300 for all): each opens or joins the
    # supplier's draft at the same moment.
    numbers = []
    for _ in range(8):
        numbers.append(quote(engine, line(DROP, "2"), line(SCARCE, "6"), customer="C-2000"))
        confirm(engine, numbers[-1])
    start = threading.Barrier(len(numbers))

    def reserve(number: str):
        start.wait()
        return run(engine, orders.reserve_order, number)

    with ThreadPoolExecutor(max_workers=len(numbers)) as pool:
        results = list(pool.map(reserve, numbers))
    pos = purchase_orders(engine)
    assert len(pos) == 1 and pos[0][0].state == "draft"
    lines = pos[0][1]
    assert sorted(ln.demand_key for ln in lines) == sorted(
        orders.demand_key(n, no) for n in numbers for no in (1, 2))
    assert sum((ln.quantity for ln in lines), D(0)) == sum((r.shortfall for r in results), D(0))
    assert sorted(ln.line_no for ln in lines) == list(range(1, len(lines) + 1))
