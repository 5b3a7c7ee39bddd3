"""Amending a confirmed order (models.orders.amend_order, issue 4): quantities down (surplus released, the ordered
units invoiced beyond the new quantity credited) and up or new lines (priced by the pricelist, credit-checked,
reserved, the ordered-policy increase invoiced); refusals below what shipped or waits in an open shipment, over the
credit limit, on a stale version; and a repeat by key that changes nothing. SQLite and PostgreSQL.

Figures from tests/sales_world.py: C-1000 contractor prices CAB-100 9.00, LAMP-200 45.00 from 10 pieces (else
50.00), SCARCE-300 89.99; C-3000 list prices and a 1,000.00 limit; VAT 19 %."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models import orders
from models.ledger import JournalEntry
from models.outbox import OutboxMessage
from models.records import AuditEvent
from models.sales import CustomerInvoice, SalesOrder
from models.stock import ReservationDemand
from tests.data.test_orders import (
    TODAY,
    books_balance,
    confirm,
    count,
    line,
    order_lines,
    quant_totals,
    quote,
    read,
    run,
    ship,
)
from tests.sales_world import CABLE, LAMP, SCARCE, build_sales_world_in
from workflows.contracts import Actor, AmendOrderCommand

SAM = Actor("sam.sales", ("sales",))


@pytest.fixture
def sw(any_engine) -> tuple:
    return any_engine, build_sales_world_in(any_engine)


def amend(engine, number, *lines, key="k1", expected_version=None, invoice_key=None, comment=""):
    cmd = AmendOrderCommand(SAM, tuple(lines), comment=comment, expected_version=expected_version)
    return run(engine, orders.amend_order, number, cmd, key=f"{number}/amend/{key}", today=TODAY,
               invoice_key=invoice_key)


def order(engine, number) -> SalesOrder:
    with Session(engine) as s:
        return s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()


def docs(engine, number) -> list[tuple[str, str, D, D]]:
    with Session(engine) as s:
        oid = s.scalar(select(SalesOrder.id).where(SalesOrder.number == number))
        return [(i.number, i.kind, i.amount_total, i.amount_residual)
                for i in s.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == oid)
                                   .order_by(CustomerInvoice.id))]


def written(engine) -> tuple[int, ...]:
    return (count(engine, CustomerInvoice), count(engine, JournalEntry), count(engine, AuditEvent),
            count(engine, OutboxMessage))


def test_amend_down_releases_the_surplus_and_credits_the_lamps_invoiced_ahead(sw):
    engine, world = sw
    number = quote(engine, line(LAMP, "25"), line(CABLE, "20"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)  # LAMP 20 of 25 (5 short), CAB 20
    first = run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    assert first.amount_total == D("1338.75")  # ordered policy: 25 × 45.00 + 19 %

    result = amend(engine, number, line(LAMP, "12"), line(CABLE, "10"), expected_version=1, comment="smaller job")

    # LAMP 20 held → 12, CAB 20 → 10: 18 released. The 13 lamps invoiced beyond 12: 585.00 + 111.15 VAT.
    assert (result.version, result.released) == (2, D("18"))
    assert (result.credit_note_number, result.credit_note_amount) == ("CRN-000001", D("696.15"))
    assert result.summary == f"{LAMP} 25 → 12; {CABLE} 20 → 10"
    # 12 × 45.00 + 10 × 9.00 = 630.00, VAT 102.60 + 17.10.
    assert (result.amount_total, result.quote.amount_total, result.quote.version) == (D("749.70"), D("749.70"), 2)
    assert result.invoice.invoice_number is None and result.reserved.fully_reserved
    lines = order_lines(engine, number)
    assert {s: (ln.quantity, ln.qty_reserved, ln.qty_invoiced, ln.qty_cancelled, ln.subtotal)
            for s, ln in lines.items()} == {
        LAMP: (D("12"), D("12"), D("12"), D("0"), D("540.00")),
        CABLE: (D("10"), D("10"), D("0"), D("0"), D("90.00")),
    }
    assert quant_totals(engine, world.product_id(LAMP)) == (D("20"), D("12"))
    assert quant_totals(engine, world.product_id(CABLE)) == (D("100"), D("10"))
    with Session(engine) as s:
        demand = s.scalars(select(ReservationDemand).where(ReservationDemand.demand_key == f"{number}/L1")).one()
        assert (demand.requested, demand.reserved) == (D("12"), D("12"))  # no top-up asks for the 13 again
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "order.amended")).one()
        assert (event.actor, event.entity_id, event.reason, event.data["version"]) == (
            "sam.sales", number, "smaller job", 2)
        notices = s.scalars(select(OutboxMessage).where(OutboxMessage.message_key.startswith(f"{number}:amended:2")))
        notices = sorted((m.recipient, m.subject) for m in notices)
    assert notices == [("orders@muster.test", f"Order {number} amended"),
                       ("sam.sales@tradeflow.test", f"Order {number} amended")]
    # The credit is offset on the invoice: what stays owed is exactly the 12 lamps (540.00 + 102.60).
    assert docs(engine, number) == [("INV-000001", "invoice", D("1338.75"), D("642.60")),
                                    ("CRN-000001", "credit_note", D("696.15"), D("0.00"))]
    row = order(engine, number)
    assert (row.version, row.amount_invoiced, row.amount_total, row.status) == (2, D("642.60"), D("749.70"),
                                                                              "confirmed")
    assert books_balance(engine)

    # The same key again (a retried activity): the same answer, nothing written twice.
    before = written(engine)
    assert amend(engine, number, line(LAMP, "12"), line(CABLE, "10"), expected_version=1) == result
    assert written(engine) == before and order(engine, number).version == 2
    # A new amendment on the old version is refused.
    with pytest.raises(orders.StaleVersion, match="now version 2"):
        amend(engine, number, line(LAMP, "11"), line(CABLE, "10"), key="k2", expected_version=1)


def test_amend_up_reprices_reserves_and_invoices_the_ordered_increase(sw):
    engine, world = sw
    number = quote(engine, line(LAMP, "5"), line(CABLE, "10"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    assert run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY).amount_total == D("297.50")

    result = amend(engine, number, line(LAMP, "12"), line(CABLE, "30"), line(SCARCE, "2"),
                   invoice_key=f"{number}/inv/2")

    # LAMP reaches the 10-piece price (45.00) on all 12; CAB 9.00; the new SCARCE line 89.99.
    lines = order_lines(engine, number)
    assert {s: (ln.line_no, ln.quantity, ln.unit_price, ln.subtotal, ln.qty_reserved) for s, ln in lines.items()} == {
        LAMP: (1, D("12"), D("45.00"), D("540.00"), D("12")),
        CABLE: (2, D("30"), D("9.00"), D("270.00"), D("30")),
        SCARCE: (3, D("2"), D("89.99"), D("179.98"), D("2")),
    }
    assert result.summary == f"{LAMP} 5 → 12; {CABLE} 10 → 30; + 2 {SCARCE}"
    assert (result.version, result.amount_total) == (2, D("1178.08"))  # 989.98 + 188.10 VAT
    assert result.reserved.fully_reserved and result.released == 0 and result.credit_note_number is None
    # The 7 more lamps are invoiced now (ordered policy), so the two invoices add up to the line: 540.00 + 102.60.
    assert (result.invoice.invoice_number, result.invoice.amount_total) == ("INV-000002", D("345.10"))
    assert [d[2] for d in docs(engine, number)] == [D("297.50"), D("345.10")]
    assert lines[LAMP].qty_invoiced == D("12")
    assert quant_totals(engine, world.product_id(SCARCE)) == (D("5"), D("2"))
    assert order(engine, number).amount_invoiced == D("642.60")
    assert books_balance(engine)

    # The increase ships like any reserved stock: one shipment for everything held.
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    assert sorted((ln.sku, ln.quantity) for ln in shipment.lines) == [(CABLE, D("30")), (LAMP, D("12")),
                                                                     (SCARCE, D("2"))]


def test_amend_is_refused_below_what_shipped_or_waits_in_an_open_shipment(sw):
    engine, world = sw
    number = quote(engine, line(CABLE, "20"), line(SCARCE, "2"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    first = run(engine, orders.create_shipment, number, 1, today=TODAY)
    run(engine, orders.record_shipment_step, first.shipment_number, "picked", actor="walter.warehouse")
    before = written(engine)

    with pytest.raises(orders.OrderInputError) as err:
        amend(engine, number, line(CABLE, "5"), line(SCARCE, "2"))
    assert err.value.field == "lines[0].quantity"
    assert err.value.reason == (f"line 1 ({CABLE}) cannot go below 20: 20 wait in shipment {first.shipment_number}; "
                                f"ship or cancel shipment {first.shipment_number} first")
    with pytest.raises(orders.OrderInputError, match=f"line 2 \\({SCARCE}\\).*ship or cancel shipment"):
        amend(engine, number, line(CABLE, "20"))  # removing SCARCE, which waits in the same shipment

    assert written(engine) == before
    ship(engine, first.shipment_number)
    before = written(engine)
    with pytest.raises(orders.OrderInputError, match=f"line 1 \\({CABLE}\\) cannot go below the 20 already "
                                                     "delivered; offer a return instead"):
        amend(engine, number, line(CABLE, "10"), line(SCARCE, "2"))
    with pytest.raises(orders.OrderInputError, match="changes nothing"):
        amend(engine, number, line(CABLE, "20"), line(SCARCE, "2"))
    with pytest.raises(orders.OrderInputError, match="agreed price"):
        amend(engine, number, line(CABLE, "20", unit_price=D("5.00")), line(SCARCE, "2"))
    # Nothing was written by any refusal.
    assert written(engine) == before and order(engine, number).version == 1
    # Raising a delivered line is fine: 5 more cables, reserved for a next shipment.
    result = amend(engine, number, line(CABLE, "25"), line(SCARCE, "2"))
    assert (result.version, order_lines(engine, number)[CABLE].qty_reserved) == (2, D("5"))
    assert books_balance(engine)

    draft = quote(engine, line(CABLE, "1"))
    with pytest.raises(orders.OrderStateError, match="only a confirmed order"):
        amend(engine, draft, line(CABLE, "2"))


def test_amend_over_the_credit_limit_is_refused_and_writes_nothing(sw):
    engine, world = sw
    # Tight Credit KG: limit 1,000.00, list prices. 10 cables = 119.00.
    number = quote(engine, line(CABLE, "10"), customer="C-3000")
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    before = written(engine)

    with pytest.raises(orders.CreditLimitExceeded, match="exposure of 1071.00 would exceed the credit limit 1000.00"):
        amend(engine, number, line(CABLE, "90"))  # 900.00 + 171.00
    assert written(engine) == before
    lines = order_lines(engine, number)
    assert (lines[CABLE].quantity, lines[CABLE].qty_reserved) == (D("10"), D("10"))
    assert (order(engine, number).version, order(engine, number).amount_total) == (1, D("119.00"))
    assert quant_totals(engine, world.product_id(CABLE)) == (D("100"), D("10"))

    # Within the limit it goes through (80 cables: 952.00).
    result = amend(engine, number, line(CABLE, "80"))
    assert (result.amount_total, result.reserved.fully_reserved, result.version) == (D("952.00"), True, 2)
    assert read(engine, orders.credit_check, number).exposure == D("952.00")
