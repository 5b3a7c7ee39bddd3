"""Quote to cash over the sales tables (models/orders.py): pricing, refusals, edits, credit exposure,
reservation, shipments, invoices with their journal, payments and cancellation, on SQLite and PostgreSQL.

Figures come from tests/sales_world.py (contractor prices: CAB-100 9.00, LAMP-200 45.00 from 10 pieces,
SCARCE-300 89.99; VAT 19 %; costs 6.00 / 30.00 / 60.00)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.accounting import LineSpec, account_balance, post_entry, trial_balance
from models.inventory import MoveRequest, post_move
from models.ledger import JournalEntry
from models.records import AuditEvent
from models.sales import CustomerInvoice, CustomerPayment, SalesOrder, SalesOrderLine, Shipment
from models.stock import Quant, StockMove
from tests.sales_world import CABLE, DROP, LAMP, SCARCE, SalesWorld, build_sales_world_in
from workflows.contracts import Actor, EditQuoteCommand, OrderStatus, QuoteLineInput

TODAY = date(2025, 3, 3)
SAM = Actor("sam.sales", ("sales",))


def run(engine, fn, *args, **kw):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return fn(s, *args, **kw)


def read(engine, fn, *args, **kw):
    with Session(engine, expire_on_commit=False) as s:
        return fn(s, *args, **kw)


@pytest.fixture
def sw(any_engine) -> tuple:
    return any_engine, build_sales_world_in(any_engine)


@pytest.fixture
def lite(engine) -> tuple:
    return engine, build_sales_world_in(engine)


def line(sku, quantity, **kw) -> QuoteLineInput:
    return QuoteLineInput(sku=sku, quantity=D(quantity), **kw)


def quote(engine, *lines, customer="C-1000", **kw) -> str:
    draft = orders.QuoteDraft(customer_code=customer, lines=tuple(lines), **kw)
    return run(engine, orders.create_quote, draft, rep="sam.sales", today=TODAY).number


def confirm(engine, number):
    for status in (OrderStatus.sent, OrderStatus.confirmed):
        run(engine, orders.set_status, number, status, actor="sam.sales")


def ship(engine, shipment_number):
    for step in ("picked", "packed", "shipped"):
        state = run(engine, orders.record_shipment_step, shipment_number, step, actor="walter.warehouse")
    return state


def order_lines(engine, number) -> dict[str, SalesOrderLine]:
    state = read(engine, orders.quote_state, number)
    with Session(engine) as s:
        return {ln.sku: s.get(SalesOrderLine, ln.line_id) for ln in state.lines}


def quant_totals(engine, product_id) -> tuple[D, D]:
    with Session(engine) as s:
        on_hand, reserved = s.execute(
            select(func.coalesce(func.sum(Quant.quantity), 0), func.coalesce(func.sum(Quant.reserved), 0))
            .where(Quant.product_id == product_id)
        ).one()
    return D(str(on_hand)), D(str(reserved))


def balances(engine, *codes) -> dict[str, D]:
    with Session(engine) as s:
        return {code: account_balance(s, code) for code in codes}


def books_balance(engine) -> bool:
    debit, credit = read(engine, trial_balance)
    return debit == credit


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


# ------------------------------------------------------------------------------------------------- quotes


def test_quote_is_priced_from_the_customers_pricelist(sw):
    engine, world = sw
    number = quote(engine, line(CABLE, "20"), line(LAMP, "10"), line(SCARCE, "2"), customer_ref="PO-4711")
    assert number == "Q-000001"
    state = read(engine, orders.quote_state, number)
    by_sku = {ln.sku: ln for ln in state.lines}
    # Cables category rule 10 % off 10.00; LAMP fixed 45.00 from 10 pieces; SCARCE cost 60 +50 % = 90, −0.01.
    assert {s: (ln.unit_price, ln.subtotal) for s, ln in by_sku.items()} == {
        CABLE: (D("9.00"), D("180.00")),
        LAMP: (D("45.00"), D("450.00")),
        SCARCE: (D("89.99"), D("179.98")),
    }
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        # tax per line: 34.20 + 85.50 + 34.20 (179.98 × 19 % = 34.1962)
        assert (order.amount_untaxed, order.amount_tax, order.amount_total) == (
            D("809.98"), D("153.90"), D("963.88"))
        assert (order.list_total, order.cost_total) == (D("900.00"), D("540.00"))
        # (900 − 809.98) / 900 = 10.002 %; (809.98 − 540) / 809.98 = 33.332 %
        assert (order.discount_percent, order.margin_percent) == (D("10.002"), D("33.332"))
        assert order.valid_until == TODAY + timedelta(days=30)
        assert order.payment_term_days == 30 and order.workflow_id == "q2c:Q-000001"
        assert order.status == OrderStatus.draft and order.version == 1
        # everything is on hand: ready today, delivered tomorrow
        assert order.promised_date == TODAY + timedelta(days=1)
        rules_used = s.scalars(select(SalesOrderLine.price_rule_id).where(SalesOrderLine.order_id == order.id)).all()
        assert all(r is not None for r in rules_used)
    assert (state.customer_segment, state.branch, state.version) == ("contractor", "HQ", 1)
    assert state.categories == ("All", "All / Cables", "All / Lighting")

    # Below the 10-piece tier the lamp costs its list price; a customer without pricelist pays list; a price
    # typed by hand wins over the pricelist.
    small = read(engine, orders.quote_state, quote(engine, line(LAMP, "5")))
    assert small.quote_number == "Q-000002" and small.lines[0].unit_price == D("50.00")
    cash = read(engine, orders.quote_state, quote(engine, line(CABLE, "3"), customer="C-2000"))
    assert cash.lines[0].unit_price == D("10.00") and cash.amount_total == D("35.70")
    manual = quote(engine, line(CABLE, "10", unit_price=D("7.50"), discount_percent=D("10")))
    lines = order_lines(engine, manual)
    assert (lines[CABLE].manual_price, lines[CABLE].subtotal, lines[CABLE].price_rule_id) == (True, D("67.50"), None)


def test_duplicate_customer_reference_is_refused(sw):
    engine, _ = sw
    first = quote(engine, line(CABLE, "1"), customer_ref="PO-4711", channel="edi")
    with pytest.raises(orders.DuplicateCustomerRef) as err:
        quote(engine, line(CABLE, "2"), customer_ref="PO-4711", channel="edi")
    assert (err.value.customer_code, err.value.customer_ref, err.value.existing_number) == ("C-1000", "PO-4711", first)
    # The reference is unique per customer only.
    assert quote(engine, line(CABLE, "2"), customer="C-2000", customer_ref="PO-4711") == "Q-000002"
    assert count(engine, SalesOrder) == 2


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"lines": (line(CABLE, "1"), line("NO-SUCH-SKU", "1"))}, "lines[1].sku"),
        ({"customer_code": "C-9999"}, "customer_code"),
        ({"lines": ()}, "lines"),
        ({"lines": (line(CABLE, "0"),)}, "lines[0].quantity"),
        ({"lines": (line(CABLE, "1.0005"),)}, "lines[0].quantity"),
        ({"lines": (line(CABLE, "1e12"),)}, "lines[0].quantity"),
        ({"lines": (line(CABLE, "1000", unit_price=D("1e11")),)}, "lines[0].quantity"),
        ({"lines": (line(CABLE, "1", discount_percent=D("150")),)}, "lines[0].discount_percent"),
        ({"lines": (line(CABLE, "1", unit_price=D("-1")),)}, "lines[0].unit_price"),
        ({"order_discount_percent": D("100")}, "order_discount_percent"),
        ({"backorder_preference": "whenever"}, "backorder_preference"),
        ({"channel": "fax"}, "channel"),
        ({"valid_until": TODAY - timedelta(days=1)}, "valid_until"),
        ({"warehouse_code": "XX"}, "warehouse_code"),
    ],
)
def test_bad_quote_input_names_the_field_and_writes_nothing(lite, kw, field):
    engine, _ = lite
    args = {"customer_code": "C-1000", "lines": (line(CABLE, "1"),), **kw}
    with pytest.raises(orders.OrderInputError) as err:
        run(engine, orders.create_quote, orders.QuoteDraft(**args), rep="sam.sales", today=TODAY)
    assert err.value.field == field and err.value.reason
    assert count(engine, SalesOrder) == 0


def test_edit_reprices_bumps_the_version_and_only_in_draft_or_changes_requested(sw):
    engine, _ = sw
    number = quote(engine, line(LAMP, "5"))
    assert read(engine, orders.quote_state, number).amount_untaxed == D("250.00")

    edit = EditQuoteCommand(actor=SAM, lines=(line(LAMP, "12"),), order_discount_percent=D("5"), expected_version=1)
    run(engine, orders.edit_quote, number, edit, today=TODAY)
    state = read(engine, orders.quote_state, number)
    # 12 lamps reach the 45.00 tier; 540.00 less 5 % order discount = 513.00
    assert (state.version, state.lines[0].unit_price, state.amount_untaxed) == (2, D("45.00"), D("513.00"))
    assert state.discount_percent == D("14.500")  # 600 list → 513

    # The same edit again (a retried activity) changes nothing, even with its old expected version.
    run(engine, orders.edit_quote, number, edit, today=TODAY)
    assert read(engine, orders.quote_state, number).version == 2
    # A different edit against the old version is refused: someone else changed the quote.
    with pytest.raises(orders.StaleVersion):
        run(engine, orders.edit_quote, number,
            EditQuoteCommand(actor=SAM, lines=(line(LAMP, "3"),), expected_version=1), today=TODAY)
    with pytest.raises(orders.OrderInputError) as err:
        run(engine, orders.edit_quote, number, EditQuoteCommand(actor=SAM, lines=(line("NOPE", "1"),)), today=TODAY)
    assert err.value.field == "lines[0].sku"

    run(engine, orders.set_status, number, OrderStatus.pending_approval, actor="sam.sales")
    with pytest.raises(orders.OrderStateError) as refused:
        run(engine, orders.edit_quote, number, EditQuoteCommand(actor=SAM, valid_until=TODAY + timedelta(days=60)),
            today=TODAY)
    assert refused.value.status == "pending_approval"
    run(engine, orders.set_status, number, OrderStatus.changes_requested, actor="maria.manager",
        reason="discount too high")
    run(engine, orders.edit_quote, number, EditQuoteCommand(actor=SAM, order_discount_percent=D("0")), today=TODAY)
    state = read(engine, orders.quote_state, number)
    assert (state.version, state.amount_untaxed, state.status) == (3, D("540.00"), "changes_requested")
    with Session(engine) as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == number)
                            .order_by(AuditEvent.id)).all()
    assert actions == ["quote.created", "quote.edited", "order.status", "order.status", "quote.edited"]


def test_status_changes_are_recorded_and_finished_orders_stay_finished(lite):
    engine, _ = lite
    number = quote(engine, line(CABLE, "1"))
    run(engine, orders.set_status, number, OrderStatus.sent, actor="system")
    run(engine, orders.set_status, number, OrderStatus.confirmed, actor="sam.sales")
    run(engine, orders.set_status, number, OrderStatus.confirmed, actor="sam.sales")  # repeat: no change
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert (order.accepted_by, order.confirmed_at is not None) == ("sam.sales", True)
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "order.status")) == 2
    run(engine, orders.set_status, number, OrderStatus.rejected, actor="maria.manager", reason="no")
    with pytest.raises(orders.OrderStateError):
        run(engine, orders.set_status, number, OrderStatus.sent, actor="system")
    with pytest.raises(orders.OrderInputError) as err:
        run(engine, orders.set_status, number, "nonsense", actor="system")
    assert err.value.field == "status"
    with pytest.raises(orders.OrderNotFound):
        read(engine, orders.quote_state, "Q-999999")


# ------------------------------------------------------------------------------------------------- credit


def test_credit_check_counts_posted_receivable_open_orders_and_this_order(sw):
    engine, world = sw
    # C-3000: limit 1,000.00, list prices, VAT 19 %; an open invoice of 300.00 in the ledger.
    run(engine, post_entry, source_key="opening:C-3000", entry_date=TODAY, journal="sales", lines=[
        LineSpec("1100", debit=D("300.00"), customer_id=world.tight_customer_id),
        LineSpec("3900", credit=D("300.00")),
    ])
    confirmed = quote(engine, line(CABLE, "20"), customer="C-3000")  # 200 + 38 = 238.00
    confirm(engine, confirmed)
    quote(engine, line(CABLE, "50"), customer="C-3000")  # a draft adds nothing to exposure
    this = quote(engine, line(CABLE, "40"), customer="C-3000")  # 400 + 76 = 476.00
    result = read(engine, orders.credit_check, this)
    assert (result.posted_receivable, result.uninvoiced_orders, result.this_order) == (
        D("300.00"), D("238.00"), D("476.00"))
    assert (result.exposure, result.limit, result.over_limit) == (D("1014.00"), D("1000.00"), True)
    assert result.customer_id == world.tight_customer_id

    # Once the confirmed order is invoiced its value moves from "uninvoiced" to the ledger: same exposure.
    run(engine, orders.reserve_order, confirmed)
    run(engine, orders.create_shipment, confirmed, 1, today=TODAY)
    ship(engine, f"SHP-{confirmed}-1")
    run(engine, orders.invoice_order, confirmed, f"{confirmed}/inv/1", today=TODAY)
    again = read(engine, orders.credit_check, this)
    assert (again.posted_receivable, again.uninvoiced_orders, again.exposure) == (D("538.00"), D("0"), D("1014.00"))

    # A customer without a limit is never over it.
    cash = quote(engine, line(CABLE, "100"), customer="C-2000")
    assert read(engine, orders.credit_check, cash).over_limit is False


# ------------------------------------------------------------------------------------------------- stock


def test_reservation_is_partial_with_the_shortfall_and_never_doubles(sw):
    engine, world = sw
    number = quote(engine, line(SCARCE, "8"), line(CABLE, "10"), line(DROP, "1", drop_ship=True))
    confirm(engine, number)
    result = run(engine, orders.reserve_order, number)
    by_sku = {ln.sku: ln for ln in result.lines}
    assert (by_sku[SCARCE].qty_reserved, by_sku[CABLE].qty_reserved, by_sku[DROP].qty_reserved) == (
        D("5"), D("10"), D("0"))
    assert (result.fully_reserved, result.shortfall) == (False, D("3"))
    again = run(engine, orders.reserve_order, number)
    assert again.shortfall == D("3")
    assert quant_totals(engine, world.product_id(SCARCE)) == (D("5"), D("5"))
    assert quant_totals(engine, world.product_id(CABLE)) == (D("100"), D("10"))

    # Stock arrives: a new reservation run tops the line up to what it needs, no further.
    run(engine, post_move, MoveRequest(key="PO-7/1", product_id=world.product_id(SCARCE), quantity=D("4"),
                                       source_location_id=world.supplier_location_id,
                                       dest_location_id=world.stock_location_id, unit_cost=D("60")))
    topped = run(engine, orders.reserve_order, number)
    assert (topped.fully_reserved, topped.shortfall) == (True, D("0"))
    assert quant_totals(engine, world.product_id(SCARCE)) == (D("9"), D("8"))


def test_shipment_posts_stock_moves_raises_delivered_and_consumes_the_reservation(sw):
    engine, world = sw
    number = quote(engine, line(CABLE, "10"), line(SCARCE, "8"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    assert shipment.shipment_number == f"SHP-{number}-1" and shipment.status == "pending"
    assert {ln.sku: ln.quantity for ln in shipment.lines} == {CABLE: D("10"), SCARCE: D("5")}
    assert run(engine, orders.create_shipment, number, 1, today=TODAY) == shipment  # same seq: same shipment
    assert run(engine, orders.create_shipment, number, 2, today=TODAY) is None  # nothing else reserved

    with pytest.raises(orders.OrderStateError):
        run(engine, orders.record_shipment_step, shipment.shipment_number, "shipped", actor="walter.warehouse")
    with pytest.raises(orders.OrderInputError) as err:
        run(engine, orders.record_shipment_step, shipment.shipment_number, "teleported", actor="walter.warehouse")
    assert err.value.field == "step"
    shipped = ship(engine, shipment.shipment_number)
    assert shipped.status == "shipped"
    lines = order_lines(engine, number)
    assert (lines[CABLE].qty_delivered, lines[CABLE].qty_reserved) == (D("10"), D("0"))
    assert (lines[SCARCE].qty_delivered, lines[SCARCE].qty_reserved) == (D("5"), D("0"))
    assert quant_totals(engine, world.product_id(CABLE)) == (D("90"), D("0"))
    assert quant_totals(engine, world.product_id(SCARCE)) == (D("0"), D("0"))
    with Session(engine) as s:
        moves = {m.key: (m.kind, m.quantity, m.value) for m in s.scalars(
            select(StockMove).where(StockMove.key.startswith(f"SHP-{number}-1/")))}
    assert moves == {
        f"SHP-{number}-1/{lines[CABLE].id}": ("delivery", D("10"), D("60.00")),
        f"SHP-{number}-1/{lines[SCARCE].id}": ("delivery", D("5"), D("300.00")),
    }
    assert balances(engine, "1220", "1200") == {"1220": D("360.00"), "1200": D("1140.00")}  # 1,500 in, 360 out
    # Shipping again changes nothing.
    moves_before = count(engine, StockMove)
    assert run(engine, orders.record_shipment_step, shipment.shipment_number, "shipped",
               actor="walter.warehouse") == shipped
    assert count(engine, StockMove) == moves_before

    # The backorder ships once the stock is there.
    run(engine, post_move, MoveRequest(key="PO-8/1", product_id=world.product_id(SCARCE), quantity=D("3"),
                                       source_location_id=world.supplier_location_id,
                                       dest_location_id=world.stock_location_id, unit_cost=D("60")))
    assert run(engine, orders.reserve_order, number).fully_reserved
    second = run(engine, orders.create_shipment, number, 2, today=TODAY)
    assert [(ln.sku, ln.quantity) for ln in second.lines] == [(SCARCE, D("3"))]
    ship(engine, second.shipment_number)
    balance = read(engine, orders.order_balance, number)
    assert balance.fully_delivered and not balance.fully_invoiced


def test_drop_ship_lines_ship_without_stock_moves(lite):
    engine, _ = lite
    number = quote(engine, line(DROP, "2", drop_ship=True))
    confirm(engine, number)
    assert run(engine, orders.reserve_order, number).fully_reserved
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    assert shipment.drop_ship and [(ln.sku, ln.quantity) for ln in shipment.lines] == [(DROP, D("2"))]
    ship(engine, shipment.shipment_number)
    assert order_lines(engine, number)[DROP].qty_delivered == D("2")
    assert count(engine, StockMove) == 3  # the world's receipts only
    assert run(engine, orders.create_shipment, number, 2, today=TODAY) is None


# ------------------------------------------------------------------------------------------------- invoices


def test_invoice_posts_a_balanced_entry_with_receivable_revenue_tax_and_cogs(sw):
    engine, world = sw
    # LAMP is invoiced on order (ordered policy), CAB on delivery.
    number = quote(engine, line(CABLE, "10"), line(LAMP, "10"))
    confirm(engine, number)
    first = run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    # Only the lamps: 10 × 45.00 = 450.00 + 85.50 VAT; nothing delivered yet, so no cost of goods yet.
    assert (first.invoice_number, first.amount_total, first.due_date) == (
        "INV-000001", D("535.50"), TODAY + timedelta(days=30))
    assert balances(engine, "1100", "4000", "2200", "5000") == {
        "1100": D("535.50"), "4000": D("-450.00"), "2200": D("-85.50"), "5000": D("0.00")}

    run(engine, orders.reserve_order, number)
    run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, f"SHP-{number}-1")
    # The lamps were invoiced before they shipped: their delivery cost (10 × 30.00) goes to COGS on shipping.
    assert balances(engine, "5000", "1220") == {"5000": D("300.00"), "1220": D("60.00")}

    second = run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY + timedelta(days=2))
    # The cables: 10 × 9.00 = 90.00 + 17.10 VAT; COGS 10 × 6.00 from the delivery move.
    assert (second.invoice_number, second.amount_total) == ("INV-000002", D("107.10"))
    with Session(engine) as s:
        entry = s.get(JournalEntry, second.journal_entry_id)
        assert entry.source_key == f"{number}/inv/2" and entry.journal == "sales"
        invoice = s.scalars(select(CustomerInvoice).where(CustomerInvoice.number == "INV-000002")).one()
        assert (invoice.amount_untaxed, invoice.amount_tax, invoice.amount_residual, invoice.status) == (
            D("90.00"), D("17.10"), D("107.10"), "posted")
    assert balances(engine, "1100", "4000", "2200", "5000", "1220") == {
        "1100": D("642.60"), "4000": D("-540.00"), "2200": D("-102.60"), "5000": D("360.00"),
        # Anglo-Saxon: the interim "delivered" account nets to zero once everything shipped is invoiced.
        "1220": D("0.00"),
    }
    assert books_balance(engine)

    # The same key again returns the same invoice and posts nothing; a new key finds nothing left to invoice.
    entries = count(engine, JournalEntry)
    assert run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY) == second
    nothing = run(engine, orders.invoice_order, number, f"{number}/inv/3", today=TODAY)
    assert nothing.invoice_number is None and nothing.amount_total == D("0")
    assert count(engine, JournalEntry) == entries and count(engine, CustomerInvoice) == 2
    balance = read(engine, orders.order_balance, number)
    assert (balance.fully_delivered, balance.fully_invoiced, balance.amount_invoiced, balance.amount_due) == (
        True, True, D("642.60"), D("642.60"))
    assert balance.next_due_date == TODAY + timedelta(days=30)


def test_an_order_not_yet_confirmed_is_not_invoiced(lite):
    engine, _ = lite
    number = quote(engine, line(LAMP, "1"))
    with pytest.raises(orders.OrderStateError) as err:
        run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    assert err.value.status == "draft"


# ------------------------------------------------------------------------------------------------- payments


def _invoiced_order(engine) -> str:
    number = quote(engine, line(CABLE, "10"), line(LAMP, "10"))
    confirm(engine, number)
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)  # INV-000001 535.50
    run(engine, orders.reserve_order, number)
    run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, f"SHP-{number}-1")
    run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY + timedelta(days=1))  # 107.10
    return number


def test_payment_is_allocated_oldest_first_and_idempotent_by_reference(sw):
    engine, world = sw
    number = _invoiced_order(engine)
    held = quote(engine, line(CABLE, "1"))
    run(engine, orders.set_status, held, OrderStatus.sent, actor="system")
    run(engine, orders.set_status, held, OrderStatus.credit_hold, actor="system")

    pay = {"reference": "BANK-2025-0001", "customer_code": "C-1000", "amount": D("600.00"),
           "payment_date": TODAY + timedelta(days=5), "recorded_by": "fiona.finance"}
    payment, signal = run(engine, orders.record_payment, **pay)
    assert signal == sorted([number, held])
    with Session(engine) as s:
        residuals = dict(s.execute(select(CustomerInvoice.number, CustomerInvoice.amount_residual)).all())
        statuses = dict(s.execute(select(CustomerInvoice.number, CustomerInvoice.status)).all())
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert order.amount_paid == D("600.00")
    # 535.50 settles the older invoice; 64.50 goes to the newer one, leaving 42.60.
    assert residuals == {"INV-000001": D("0.00"), "INV-000002": D("42.60")}
    assert statuses == {"INV-000001": "paid", "INV-000002": "partial"}
    assert balances(engine, "1100", "1900") == {"1100": D("42.60"), "1900": D("600.00")}

    # Importing the same bank line again returns the same payment and changes nothing.
    again, signal_again = run(engine, orders.record_payment, **pay)
    assert again.id == payment.id and signal_again == signal
    assert count(engine, CustomerPayment) == 1
    assert balances(engine, "1100", "1900") == {"1100": D("42.60"), "1900": D("600.00")}
    with pytest.raises(orders.OrderInputError) as err:
        run(engine, orders.record_payment, **{**pay, "amount": D("601.00")})
    assert err.value.field == "reference"

    # More than is open: the invoice is settled and the rest stays on the customer's account.
    _, touched = run(engine, orders.record_payment, reference="BANK-2025-0002", customer_code="C-1000",
                     amount=D("50.00"), payment_date=TODAY + timedelta(days=6), recorded_by="fiona.finance",
                     invoice_number="INV-000002")
    assert number in touched
    assert balances(engine, "1100") == {"1100": D("-7.40")}
    balance = read(engine, orders.order_balance, number)
    assert (balance.amount_paid, balance.amount_due, balance.next_due_date) == (D("642.60"), D("0.00"), None)
    assert books_balance(engine)

    for bad, field in [({"amount": D("0")}, "amount"), ({"amount": D("1.001")}, "amount"),
                       ({"amount": D("1e15")}, "amount"), ({"customer_code": "C-9999"}, "customer_code"), ({"reference": " "}, "reference"),
                       ({"invoice_number": "INV-999999"}, "invoice_number")]:
        with pytest.raises(orders.OrderInputError) as err:
            run(engine, orders.record_payment, **{**pay, "reference": "BANK-X", **bad})
        assert err.value.field == field


# ------------------------------------------------------------------------------------------------- cancel


def test_cancellation_releases_cancels_credits_and_the_books_still_balance(sw):
    engine, world = sw
    # LAMP 25 (20 in stock, ordered policy), CAB 20, SCARCE 8 (5 in stock).
    number = quote(engine, line(LAMP, "25"), line(CABLE, "20"), line(SCARCE, "8"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    invoice = run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    assert invoice.amount_total == D("1338.75")  # 25 × 45.00 = 1,125.00 + 213.75 VAT
    run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, f"SHP-{number}-1")  # LAMP 20, CAB 20, SCARCE 5
    run(engine, post_move, MoveRequest(key="PO-9/1", product_id=world.product_id(SCARCE), quantity=D("2"),
                                       source_location_id=world.supplier_location_id,
                                       dest_location_id=world.stock_location_id, unit_cost=D("60")))
    run(engine, orders.reserve_order, number)
    second = run(engine, orders.create_shipment, number, 2, today=TODAY)
    run(engine, orders.record_shipment_step, second.shipment_number, "picked", actor="walter.warehouse")

    result = run(engine, orders.cancel_order, number, actor="sam.sales", reason="customer withdrew",
                 today=TODAY + timedelta(days=3))
    # Released: the 2 SCARCE of the picked shipment. Cancelled: LAMP 5 + SCARCE 3. Credited: the 5 lamps invoiced
    # and never delivered, 225.00 + 42.75 VAT. Delivered 45 units may come back as a return.
    assert (result.released, result.backorders_cancelled, result.shipped_returnable) == (D("2"), D("8"), D("45"))
    assert (result.credit_note_number, result.credit_note_amount) == ("CRN-000001", D("267.75"))
    lines = order_lines(engine, number)
    assert {s: (ln.qty_delivered, ln.qty_cancelled, ln.qty_invoiced, ln.qty_reserved) for s, ln in lines.items()} == {
        LAMP: (D("20"), D("5"), D("20"), D("0")),
        CABLE: (D("20"), D("0"), D("0"), D("0")),
        SCARCE: (D("5"), D("3"), D("0"), D("0")),
    }
    assert quant_totals(engine, world.product_id(SCARCE)) == (D("2"), D("0"))
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert (order.status, order.cancel_reason, order.amount_invoiced) == (
            "cancelled", "customer withdrew", D("1071.00"))
        assert s.scalars(select(Shipment.status).where(Shipment.number == second.shipment_number)).one() == "cancelled"
        docs = {i.number: (i.kind, i.amount_total, i.amount_residual, i.status)
                for i in s.scalars(select(CustomerInvoice))}
    # The credit is offset against the unpaid invoice.
    assert docs == {"INV-000001": ("invoice", D("1338.75"), D("1071.00"), "partial"),
                    "CRN-000001": ("credit_note", D("267.75"), D("0.00"), "paid")}
    assert balances(engine, "1100", "4000", "2200", "5000") == {
        "1100": D("1071.00"), "4000": D("-900.00"), "2200": D("-171.00"),
        "5000": D("600.00"),  # the 20 lamps shipped after they were invoiced
    }
    assert books_balance(engine)

    # A second cancel changes nothing and reports the same compensation.
    rows = (count(engine, CustomerInvoice), count(engine, JournalEntry), count(engine, AuditEvent))
    assert run(engine, orders.cancel_order, number, actor="sam.sales", reason="again", today=TODAY) == result
    assert (count(engine, CustomerInvoice), count(engine, JournalEntry), count(engine, AuditEvent)) == rows
    with pytest.raises(orders.OrderStateError):
        run(engine, orders.set_status, number, OrderStatus.confirmed, actor="sam.sales")
    with pytest.raises(orders.OrderStateError):
        run(engine, orders.create_shipment, number, 3, today=TODAY)


def test_cancelling_a_draft_cancels_every_quantity_and_posts_nothing(lite):
    engine, _ = lite
    number = quote(engine, line(CABLE, "4"), line(LAMP, "2"))
    entries = count(engine, JournalEntry)
    result = run(engine, orders.cancel_order, number, actor="sam.sales", reason="typo", today=TODAY)
    assert (result.released, result.backorders_cancelled, result.credit_note_number) == (D("0"), D("6"), None)
    assert count(engine, JournalEntry) == entries


def test_number_sequences(lite):
    engine, _ = lite
    assert [run(engine, orders.next_number, "payment") for _ in range(2)] == ["PAY-000001", "PAY-000002"]
    assert run(engine, orders.next_number, "credit_note") == "CRN-000001"
    with pytest.raises(ValueError):
        run(engine, orders.next_number, "bogus")


def test_world_is_reusable_next_to_the_approval_people(engine):
    """The worker fixture adds approval_world's people first; the sales world must build on top of them."""
    from tests.approval_world import add_people

    with Session(engine) as s, s.begin():
        add_people(s)
    world = build_sales_world_in(engine)
    assert isinstance(world, SalesWorld) and world.rep == "sam.sales"


def test_concurrent_quotes_get_distinct_numbers_and_one_invoice_key_posts_once(sw):
    """Writers in parallel threads, each in its own transaction (as parallel activities are)."""
    from concurrent.futures import ThreadPoolExecutor

    engine, _ = sw
    with ThreadPoolExecutor(max_workers=4) as pool:
        numbers = list(pool.map(lambda i: quote(engine, line(CABLE, "1"), customer_ref=f"R-{i}"), range(12)))
    assert sorted(numbers) == [f"Q-{n:06d}" for n in range(1, 13)]

    number = quote(engine, line(LAMP, "2"))
    confirm(engine, number)
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = list(pool.map(
            lambda _: run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY), range(4)))
    assert {s.invoice_number for s in states} == {"INV-000001"}
    assert count(engine, CustomerInvoice) == 1
    assert balances(engine, "1100") == {"1100": D("119.00")}  # 2 × 50.00 + 19 % VAT, once


def test_the_concession_is_measured_against_the_customers_pricelist_not_the_list(lite):
    engine, _ = lite
    # Contractor prices: CAB-100 9.00 (10 % off its 10.00 list). Nothing on top: no concession, though 10 % off list.
    plain = quote(engine, line(CABLE, "10"))
    state = read(engine, orders.quote_state, plain)
    assert (state.discount_percent, state.concession_percent) == (D("10.000"), D("0.000"))
    # 5 % on top on one line, and a manual price of 40.00 for LAMP-200 (contractor price 50.00 under 10 pieces):
    # agreed 10 × 9.00 + 2 × 50.00 = 190.00; quoted 85.50 + 80.00 = 165.50; concession 24.50 / 190 = 12.895 %.
    given = quote(engine, line(CABLE, "10", discount_percent=D("5")), line(LAMP, "2", unit_price=D("40.00")))
    state = read(engine, orders.quote_state, given)
    assert state.amount_untaxed == D("165.50") and state.concession_percent == D("12.895")
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == given)).one()
        assert order.agreed_total == D("190.00")
        agreed = [ln.agreed_price for ln in s.scalars(select(SalesOrderLine).where(SalesOrderLine.order_id == order.id)
                                                      .order_by(SalesOrderLine.line_no))]
        assert agreed == [D("9.00"), D("50.00")]
    # Priced above the pricelist: a negative concession (nothing to approve on discount).
    above = quote(engine, line(CABLE, "10", unit_price=D("9.90")))
    assert read(engine, orders.quote_state, above).concession_percent == D("-10.000")
