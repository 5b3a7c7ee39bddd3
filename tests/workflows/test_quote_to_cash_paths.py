"""QuoteToCash, the remaining process paths on a real Temporal dev server with the real activities over SQLite:
ship-complete waiting for a receipt, drop-ship, and the customer cancelling the backordered rest (when asked,
and later while a confirmed order waits). Each test ends on the rows: order and lines, shipments, reservations,
stock, invoices and credit notes, and a balanced ledger.

The helpers and the world come from test_quote_to_cash.py (same fixtures, same people).
"""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from models.inventory import MoveRequest, post_move
from models.ledger import JournalLine
from models.sales import CustomerInvoiceLine, Shipment, ShipmentLine
from models.stock import ReservationDemand, StockMove
from tests.data.test_purchasing import add_supplier, purchase_orders
from tests.sales_world import CABLE, DROP, LAMP, SCARCE
from tests.workflows.histories import keep_history
from tests.workflows.test_quote_to_cash import (  # noqa: F401  (world is a fixture)
    CUSTOMER_ACTOR,
    REP,
    WAREHOUSE,
    assert_ledger_balances,
    held,
    invoices,
    lines,
    number,
    on_hand,
    order_row,
    pay,
    receivable,
    refused,
    ship,
    start,
    status,
    until,
    MANAGER,
    world,
)
from workflows.contracts import AmendOrderCommand, BackorderChoiceCommand, QuoteCommand, QuoteLineInput
from workflows.quote_to_cash import QuoteToCash
from workflows.search_attributes import TRADEFLOW_CUSTOMER, TRADEFLOW_WAREHOUSE


def shipments(engine, quote: str) -> list[tuple[int, str, bool, dict[str, D]]]:
    """(seq, status, drop_ship, {order line id: quantity}) of the order's shipments."""
    with Session(engine) as s:
        rows = s.scalars(select(Shipment).where(Shipment.number.startswith(f"SHP-{quote}-")).order_by(Shipment.seq))
        return [(sh.seq, sh.status, sh.drop_ship,
                 {sl.order_line_id: sl.quantity
                  for sl in s.scalars(select(ShipmentLine).where(ShipmentLine.shipment_id == sh.id))})
                for sh in rows]


def receive(engine, world, sku: str, quantity: str, key: str) -> None:
    """The warehouse posts a supplier receipt into WH/Stock (purchase orders do not exist yet)."""
    with Session(engine) as s, s.begin():
        post_move(s, MoveRequest(key=key, product_id=world.product_id(sku), quantity=D(quantity),
                                 source_location_id=world.supplier_location_id,
                                 dest_location_id=world.stock_location_id, unit_cost=D("60.00")))


async def test_ship_complete_waits_for_the_receipt_then_ships_once(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Tight Credit KG ships complete; 8 scarce items at list 100.00 (952.00 with VAT, inside its 1,000.00 limit),
    # 5 on hand.
    handle = await start(temporal_env, worker, engine, world.tight_customer_code, [(SCARCE, "8", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"

    # Confirmed and holding what there is, but nothing ships: the customer wants it all at once.
    view = await until(handle, lambda v: v.waiting_for == "stock for the backorder", "waiting for stock")
    assert view.open_shipments == ()
    assert [e.detail for e in view.timeline if e.what == "backorder"] == ["3 short; waiting for stock"]
    assert shipments(engine, quote) == []
    assert held(engine, quote) == D("5") and on_hand(engine, world, SCARCE) == (D("5"), D("5"))
    assert invoices(engine, quote) == []
    described = await handle.describe()
    assert described.typed_search_attributes.get(TRADEFLOW_WAREHOUSE) == world.warehouse_code
    assert described.typed_search_attributes.get(TRADEFLOW_CUSTOMER) == world.tight_customer_code

    # Three arrive; the receipt tells the order, which tops up its reservation and ships everything in one go.
    receive(engine, world, SCARCE, "3", "test:receipt:SCARCE:complete")
    await handle.signal(QuoteToCash.stock_arrived)
    await ship(client, handle, 1)
    await status(handle, "delivered")
    line = lines(engine, quote)[1]
    assert shipments(engine, quote) == [(1, "shipped", False, {line.id: D("8")})]
    assert [(i.amount_untaxed, i.amount_total) for i in invoices(engine, quote)] == [(D("800.00"), D("952.00"))]

    await pay(engine, client, reference="BANK-0300", customer=world.tight_customer_code, amount="952.00")
    view = await handle.result()
    await keep_history(handle, "q2c_ship_complete_after_receipt_standing")

    assert view.status == "done" and view.open_shipments == ()
    whats = [e.what for e in view.timeline]
    assert whats.count("shipment 1 created") == 1 and "shipment 2 created" not in whats
    line = lines(engine, quote)[1]
    assert (line.qty_delivered, line.qty_invoiced, line.qty_cancelled, line.qty_reserved) == (
        D("8"), D("8"), D("0"), D("0"))
    assert on_hand(engine, world, SCARCE) == (D("0"), D("0")) and held(engine, quote) == 0
    assert [i.status for i in invoices(engine, quote)] == ["paid"]
    assert receivable(engine, world.tight_customer_id) == 0
    assert_ledger_balances(engine)


async def test_drop_ship_line_gets_its_own_shipment_without_stock_moves(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # 10 cables from stock (contractor price 9.00) and 2 drop-ship items the supplier delivers (200.00 each).
    handle = await start(temporal_env, worker, engine, world.customer_code,
                         [(CABLE, "10", {}), (DROP, "2", {"drop_ship": True})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"

    cable, drop = lines(engine, quote)[1], lines(engine, quote)[2]
    assert shipments(engine, quote) == [(1, "pending", False, {cable.id: D("10")}),
                                        (2, "pending", True, {drop.id: D("2")})]
    # Only the stock line is reserved; nothing is invoiced before delivery (both products: delivered policy).
    assert held(engine, quote) == D("10") and drop.qty_reserved == 0
    assert invoices(engine, quote) == []

    await ship(client, handle, 2)  # the supplier's delivery, recorded on the drop-ship shipment
    await until(handle, lambda v: [e.what for e in v.timeline].count("invoiced") == 1, "drop-ship invoice")
    await ship(client, handle, 1)
    await status(handle, "delivered")

    docs = invoices(engine, quote)
    # Drop-ship: 2 × 200.00 + 19 % VAT; then the cables: 10 × 9.00 + 19 %.
    assert [(i.amount_untaxed, i.amount_total) for i in docs] == [(D("400.00"), D("476.00")), (D("90.00"),
                                                                                               D("107.10"))]
    with Session(engine) as s:
        drop_row = s.scalars(select(Shipment).where(Shipment.number == f"SHP-{quote}-2")).one()
        assert s.scalars(select(ShipmentLine.move_id).where(ShipmentLine.shipment_id == drop_row.id)).all() == [None]
        # This world knows no supplier of DROP-400, so no purchase order could be placed (the order says so in
        # its audit) and nothing values the delivery: no stock move, no cost of goods.
        assert s.scalars(select(StockMove.key).where(StockMove.key.startswith(f"SHP-{quote}-2/"))).all() == []
        assert s.scalars(select(CustomerInvoiceLine.cost_amount)
                         .where(CustomerInvoiceLine.order_line_id == drop.id)).all() == [D("0.00")]
        assert s.scalars(select(JournalLine.id).where(JournalLine.label == DROP)).all() == []
        assert s.scalars(select(CustomerInvoiceLine.cost_amount)
                         .where(CustomerInvoiceLine.order_line_id == cable.id)).all() == [D("60.00")]
    assert on_hand(engine, world, DROP) == (D("0"), D("0"))

    await pay(engine, client, reference="BANK-0400", customer=world.customer_code, amount="583.10")
    view = await handle.result()
    await keep_history(handle, "q2c_drop_ship_done_standing")

    assert view.status == "done"
    created = [e.detail for e in view.timeline if e.what == "shipment 2 created"]
    assert created == [f"SHP-{quote}-2: 2 {DROP} (drop-ship)"]
    cable, drop = lines(engine, quote)[1], lines(engine, quote)[2]
    assert (drop.qty_delivered, drop.qty_invoiced) == (D("2"), D("2"))
    assert (cable.qty_delivered, cable.qty_invoiced) == (D("10"), D("10"))
    assert on_hand(engine, world, CABLE) == (D("90"), D("0")) and held(engine, quote) == 0
    assert [i.status for i in invoices(engine, quote)] == ["paid", "paid"]
    assert receivable(engine, world.customer_id) == 0
    assert_ledger_balances(engine)


async def test_drop_ship_line_with_a_supplier_is_ordered_received_and_costed(temporal_env, worker, people_engine,
                                                                             world):
    engine, client = people_engine, temporal_env.client
    # As above, but a supplier sells DROP-400 at 140.00: the drop-ship shipment orders it from them.
    supplier = add_supplier(engine, "S-ELX", offers=((world.product_id(DROP), "140.00", "1", 5),))
    handle = await start(temporal_env, worker, engine, world.customer_code,
                         [(CABLE, "10", {}), (DROP, "2", {"drop_ship": True})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"

    cable, drop = lines(engine, quote)[1], lines(engine, quote)[2]
    assert shipments(engine, quote) == [(1, "pending", False, {cable.id: D("10")}),
                                        (2, "pending", True, {drop.id: D("2")})]
    # One confirmed purchase order, delivered straight to the customer, for the drop-ship line at the offer price.
    [(po, [po_line])] = [(po, po_lines) for po, po_lines in purchase_orders(engine) if po.origin == quote]
    assert (po.supplier_id, po.state, po.dest_customer_id, po.dest_warehouse_id) == (
        supplier, "confirmed", world.customer_id, None)
    assert (po_line.product_id, po_line.quantity, po_line.unit_cost, po_line.qty_received,
            po_line.sales_order_line_id) == (world.product_id(DROP), D("2"), D("140.0000"), D("0"), drop.id)

    await ship(client, handle, 2)  # the supplier's delivery, recorded on the drop-ship shipment
    await until(handle, lambda v: [e.what for e in v.timeline].count("invoiced") == 1, "drop-ship invoice")
    await ship(client, handle, 1)
    await status(handle, "delivered")
    # Drop-ship: 2 × 200.00 + 19 % VAT; then the cables: 10 × 9.00 + 19 %.
    assert [(i.amount_untaxed, i.amount_total) for i in invoices(engine, quote)] == [
        (D("400.00"), D("476.00")), (D("90.00"), D("107.10"))]

    await pay(engine, client, reference="BANK-0410", customer=world.customer_code, amount="583.10")
    view = await handle.result()

    assert view.status == "done"
    [(po, [po_line])] = [(po, po_lines) for po, po_lines in purchase_orders(engine) if po.origin == quote]
    assert (po.state, po.received_at is not None, po_line.qty_received) == ("received", True, D("2"))
    with Session(engine) as s:
        # The supplier's delivery is valued at the purchase price and that cost reaches the drop-ship invoice line.
        assert s.scalars(select(CustomerInvoiceLine.cost_amount)
                         .where(CustomerInvoiceLine.order_line_id == drop.id)).all() == [D("280.00")]
        assert s.scalars(select(CustomerInvoiceLine.cost_amount)
                         .where(CustomerInvoiceLine.order_line_id == cable.id)).all() == [D("60.00")]
    assert on_hand(engine, world, DROP) == (D("0"), D("0"))  # none of it passed through our stock
    assert on_hand(engine, world, CABLE) == (D("90"), D("0")) and held(engine, quote) == 0
    assert [i.status for i in invoices(engine, quote)] == ["paid", "paid"]
    assert receivable(engine, world.customer_id) == 0
    assert_ledger_balances(engine)


async def test_customer_asked_cancels_the_rest(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Cash & Carry is asked; 8 scarce items, 5 on hand: it takes the 5 and cancels the 3 on backorder.
    handle = await start(temporal_env, worker, engine, world.cash_customer_code, [(SCARCE, "8", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "awaiting_customer"
    assert await handle.execute_update(QuoteToCash.choose_backorder,
                                       BackorderChoiceCommand(CUSTOMER_ACTOR, "cancel_rest")) == "confirmed"

    line = lines(engine, quote)[1]
    assert (line.qty_cancelled, line.qty_reserved) == (D("3"), D("5"))
    assert shipments(engine, quote) == [(1, "pending", False, {line.id: D("5")})]
    await ship(client, handle, 1)
    await status(handle, "delivered")  # nothing left to wait for
    assert [i.amount_total for i in invoices(engine, quote)] == [D("595.00")]  # 5 × 100.00 + 19 %

    await pay(engine, client, reference="BANK-0500", customer=world.cash_customer_code, amount="595.00")
    view = await handle.result()
    await keep_history(handle, "q2c_cancel_rest_when_asked_standing")

    assert view.status == "done"
    whats = [e.what for e in view.timeline]
    assert "backorder" not in whats  # no backorder was ever opened
    assert [e.detail for e in view.timeline if e.what == "backorder cancelled"] == ["3 cancelled"]
    assert [e.detail for e in view.timeline if e.what == "backorder choice"] == ["cancel_rest"]
    line = lines(engine, quote)[1]
    assert (line.qty_delivered, line.qty_cancelled, line.qty_invoiced) == (D("5"), D("3"), D("5"))
    assert on_hand(engine, world, SCARCE) == (D("0"), D("0")) and held(engine, quote) == 0
    assert receivable(engine, world.cash_customer_id) == 0
    assert_ledger_balances(engine)


async def test_cancel_rest_while_confirmed_credits_what_was_invoiced_ahead(temporal_env, worker, people_engine,
                                                                           world):
    engine, client = people_engine, temporal_env.client
    # 25 lamps, 20 on hand, invoiced on ordered quantities at confirmation; the 5 short go on backorder.
    handle = await start(temporal_env, worker, engine, world.cash_customer_code, [(LAMP, "25", {})],
                         backorder_preference="ship_available")
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "confirmed"
    assert [i.amount_total for i in invoices(engine, quote)] == [D("1487.50")]  # 25 × 50.00 + 19 %
    await ship(client, handle, 1)
    await until(handle, lambda v: "shipment 1 shipped" in [e.what for e in v.timeline], "shipment 1 settled")
    assert order_row(engine, quote).status == "confirmed"  # 5 still on backorder

    await refused(handle.execute_update(QuoteToCash.choose_backorder,
                                        BackorderChoiceCommand(WAREHOUSE, "cancel_rest")), "NotAllowed")
    await refused(handle.execute_update(QuoteToCash.choose_backorder,
                                        BackorderChoiceCommand(CUSTOMER_ACTOR, "ship_complete")), "OrderStateInvalid")
    # The customer gives up on the 5: with nothing left to deliver, the order is delivered at once.
    assert await handle.execute_update(QuoteToCash.choose_backorder,
                                       BackorderChoiceCommand(CUSTOMER_ACTOR, "cancel_rest")) == "delivered"
    await refused(handle.execute_update(QuoteToCash.choose_backorder,
                                        BackorderChoiceCommand(CUSTOMER_ACTOR, "cancel_rest")), "OrderStateInvalid")

    docs = invoices(engine, quote)
    # The 5 lamps invoiced and never to be delivered are credited (250.00 + 47.50), offset on the invoice.
    assert [(d.kind, d.amount_total, d.amount_residual) for d in docs] == [
        ("invoice", D("1487.50"), D("1190.00")), ("credit_note", D("297.50"), D("0.00"))]
    assert receivable(engine, world.cash_customer_id) == D("1190.00")
    with Session(engine) as s:
        demand = s.scalars(select(ReservationDemand).where(ReservationDemand.demand_key == f"{quote}/L1")).one()
        assert (demand.requested, demand.reserved) == (D("0"), D("0"))  # it no longer asks for the 5

    await pay(engine, client, reference="BANK-0600", customer=world.cash_customer_code, amount="1190.00")
    view = await handle.result()
    await keep_history(handle, "q2c_cancel_rest_after_partial_shipment_standing")

    assert view.status == "done"
    cancelled = [e for e in view.timeline if e.what == "backorder cancelled"]
    assert [(e.actor, e.detail) for e in cancelled] == [
        (CUSTOMER_ACTOR.username, f"5 cancelled, credit note {docs[1].number} for 297.50")]
    lamp = lines(engine, quote)[1]
    assert (lamp.qty_delivered, lamp.qty_cancelled, lamp.qty_invoiced, lamp.qty_reserved) == (
        D("20"), D("5"), D("20"), D("0"))
    assert [d.status for d in invoices(engine, quote)] == ["paid", "paid"]
    assert on_hand(engine, world, LAMP) == (D("0"), D("0")) and held(engine, quote) == 0
    assert receivable(engine, world.cash_customer_id) == 0
    assert_ledger_balances(engine)


async def test_amend_down_then_up_on_a_running_order(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # 25 lamps (20 on hand, invoiced on ordered quantities at confirmation) and 10 cables at contractor prices.
    handle = await start(temporal_env, worker, engine, world.customer_code, [(LAMP, "25", {}), (CABLE, "10", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"
    assert [i.amount_total for i in invoices(engine, quote)] == [D("1338.75")]  # 25 × 45.00 + 19 %
    lamp, cable = lines(engine, quote)[1], lines(engine, quote)[2]
    assert shipments(engine, quote) == [(1, "pending", False, {lamp.id: D("20"), cable.id: D("10")})]

    def wanted(*pairs):
        return tuple(QuoteLineInput(sku, D(q)) for sku, q in pairs)

    # Not below what waits in the open shipment; not by the warehouse; not on a stale version.
    why = await refused(handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        REP, wanted((LAMP, "15"), (CABLE, "10")))), "OrderInputInvalid")
    assert f"ship or cancel shipment SHP-{quote}-1 first" in why
    await refused(handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        WAREHOUSE, wanted((LAMP, "20"), (CABLE, "10")))), "NotAllowed")
    await refused(handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        REP, wanted((LAMP, "20"), (CABLE, "10")), expected_version=7)), "StaleVersion")

    # Down: the 5 lamps on backorder go, and so does their invoiced amount (225.00 + 42.75 VAT).
    state = await handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        REP, wanted((LAMP, "20"), (CABLE, "10")), comment="customer needs fewer", expected_version=1))
    assert (state.version, state.amount_total, state.status) == (2, D("1178.10"), "confirmed")
    docs = invoices(engine, quote)
    assert [(d.kind, d.amount_total, d.amount_residual) for d in docs] == [
        ("invoice", D("1338.75"), D("1071.00")), ("credit_note", D("267.75"), D("0.00"))]
    assert lines(engine, quote)[1].quantity == D("20") and held(engine, quote) == D("30")

    # Up: 20 more cables and 2 scarce items, by a sales manager; the reservation pass puts them in shipment 2.
    state = await handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        MANAGER, wanted((LAMP, "20"), (CABLE, "30"), (SCARCE, "2")), expected_version=2))
    assert (state.version, state.amount_total) == (3, D("1606.48"))  # 1,349.98 + 256.50 VAT
    view = await handle.query(QuoteToCash.view)
    assert view.open_shipments == (f"SHP-{quote}-1", f"SHP-{quote}-2") and view.version == 3
    scarce = lines(engine, quote)[3]
    assert shipments(engine, quote)[1] == (2, "pending", False, {cable.id: D("20"), scarce.id: D("2")})
    assert held(engine, quote) == D("52")

    await ship(client, handle, 1)
    await ship(client, handle, 2)
    await status(handle, "delivered")
    # Cables and scarce items are invoiced as they ship: 10 × 9.00, then 20 × 9.00 + 2 × 89.99, with VAT.
    assert [d.amount_total for d in invoices(engine, quote)] == [D("1338.75"), D("267.75"), D("107.10"),
                                                                 D("428.38")]
    await pay(engine, client, reference="BANK-0700", customer=world.customer_code, amount="1606.48")
    view = await handle.result()
    await keep_history(handle, "q2c_amend_down_then_up_standing")

    assert view.status == "done"
    amended = [(e.what, e.actor) for e in view.timeline if e.what.startswith("order amended")]
    assert amended == [("order amended (version 2)", REP.username), ("order amended (version 3)", MANAGER.username)]
    details = [e.detail for e in view.timeline if e.what.startswith("order amended")]
    assert details[0] == (f"{LAMP} 25 → 20; total 1178.10; credit note {docs[1].number} for 267.75 "
                          "(customer needs fewer)")
    assert details[1] == f"{CABLE} 10 → 30; + 2 {SCARCE}; total 1606.48"
    got = {ln.line_no: (ln.quantity, ln.qty_delivered, ln.qty_invoiced, ln.qty_reserved)
           for ln in lines(engine, quote).values()}
    assert got == {1: (D("20"), D("20"), D("20"), D("0")), 2: (D("30"), D("30"), D("30"), D("0")),
                   3: (D("2"), D("2"), D("2"), D("0"))}
    row = order_row(engine, quote)
    assert (row.version, row.amount_total, row.amount_invoiced, row.amount_paid) == (
        3, D("1606.48"), D("1606.48"), D("1606.48"))
    assert held(engine, quote) == 0 and on_hand(engine, world, LAMP) == (D("0"), D("0"))
    assert receivable(engine, world.customer_id) == 0
    assert_ledger_balances(engine)
