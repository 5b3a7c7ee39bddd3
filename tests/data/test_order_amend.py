"""Amending a confirmed order (models.orders.amend_order, issue 4): quantities down (surplus released, the ordered
units invoiced beyond the new quantity credited) and up or new lines (priced by the pricelist, credit-checked,
reserved, the ordered-policy increase invoiced); refusals below what shipped or waits in an open shipment, over the
credit limit, on a stale version; and a repeat by key that changes nothing. Prices (step 9): a lower price or
a line discount holds for the whole line, invoiced units get the difference back in a credit note with tax; a
higher price on invoiced units and a rise over the credit limit are refused; a price the quote approval policy
routes asks for approval (AmendmentNeedsApproval, nothing written) unless the approval is given. SQLite and
PostgreSQL.

Figures from tests/sales_world.py: C-1000 contractor prices CAB-100 9.00, LAMP-200 45.00 from 10 pieces (else
50.00), SCARCE-300 89.99; C-3000 list prices and a 1,000.00 limit; VAT 19 %."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models import orders
from models.approval_policies import create_draft, publish
from models.inventory import MoveRequest, post_move
from models.ledger import JournalEntry
from models.outbox import OutboxMessage
from models.records import AuditEvent
from models.sales import CustomerInvoice, CustomerInvoiceLine, SalesOrder
from models.stock import ReservationDemand
from tests.approval_world import two_step_quote_policy
from tests.data.test_orders import (
    TODAY,
    balances,
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
from workflows.contracts import Actor, AmendedLine, AmendOrderCommand

SAM = Actor("sam.sales", ("sales",))


@pytest.fixture
def sw(any_engine) -> tuple:
    return any_engine, build_sales_world_in(any_engine)


def amend(engine, number, *lines, key="k1", expected_version=None, invoice_key=None, comment="", **approval):
    cmd = AmendOrderCommand(SAM, tuple(lines), comment=comment, expected_version=expected_version)
    return run(engine, orders.amend_order, number, cmd, key=f"{number}/amend/{key}", today=TODAY,
               invoice_key=invoice_key, **approval)


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
    assert result.summary == f"{LAMP} 5 → 12, price 50.00 → 45.00; {CABLE} 10 → 30; + 2 {SCARCE}"
    assert (result.version, result.amount_total) == (2, D("1178.08"))  # 989.98 + 188.10 VAT
    assert result.reserved.fully_reserved and result.released == 0
    # The 5 lamps invoiced at 50.00 now cost 45.00: 25.00 + 4.75 VAT back; the 7 more are invoiced at 45.00 now
    # (ordered policy): 315.00 + 59.85. What is invoiced adds up to the line, 540.00 + 102.60.
    assert (result.credit_note_number, result.credit_note_amount) == ("CRN-000001", D("29.75"))
    assert (result.invoice.invoice_number, result.invoice.amount_total) == ("INV-000002", D("374.85"))
    assert docs(engine, number) == [("INV-000001", "invoice", D("297.50"), D("267.75")),
                                    ("CRN-000001", "credit_note", D("29.75"), D("0.00")),
                                    ("INV-000002", "invoice", D("374.85"), D("374.85"))]
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
    with pytest.raises(orders.OrderInputError) as err:
        amend(engine, number, line(CABLE, "20"), line(SCARCE, "2", unit_price=D("5.001")))
    assert (err.value.field, err.value.reason) == ("lines[1].unit_price", "must be zero or positive, in cents")
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


# ------------------------------------------------------------------------------------------------- prices


def note_rows(engine, note_number) -> list[tuple[D, D, D, D]]:
    """(quantity, unit price, subtotal, tax) of a credit note's rows."""
    with Session(engine) as s:
        note_id = s.scalar(select(CustomerInvoice.id).where(CustomerInvoice.number == note_number))
        return [(ln.quantity, ln.unit_price, ln.subtotal, ln.tax_amount) for ln in s.scalars(
            select(CustomerInvoiceLine).where(CustomerInvoiceLine.invoice_id == note_id)
            .order_by(CustomerInvoiceLine.id))]


def test_a_discount_on_an_uninvoiced_line_lowers_the_totals_and_what_is_invoiced_later(sw):
    engine, world = sw
    number = quote(engine, line(CABLE, "20"), line(LAMP, "5"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)

    # The quantity stays: only the line discount changes (before step 9 this was refused).
    result = amend(engine, number, line(CABLE, "20", discount_percent=D("5")), line(LAMP, "5"), expected_version=1)

    # 20 × 9.00 − 5 % = 171.00 + 32.49 VAT; the lamps 250.00 + 47.50. Nothing was invoiced: no credit note.
    assert result.summary == f"{CABLE} discount 0 % → 5 %"
    assert (result.version, result.amount_total, result.credit_note_number, result.released) == (
        2, D("500.99"), None, D("0"))
    cable = order_lines(engine, number)[CABLE]
    assert (cable.quantity, cable.unit_price, cable.discount_percent, cable.manual_price, cable.subtotal,
            cable.tax_amount, cable.qty_reserved) == (D("20"), D("9.00"), D("5"), False, D("171.00"), D("32.49"),
                                                      D("20"))
    row = order(engine, number)
    # Agreed prices are still 180.00 + 250.00: the rep now gives 9.00 of 430.00 (2.093 %); margin 151 / 421.
    assert (row.amount_untaxed, row.amount_tax, row.agreed_total, row.concession_percent, row.margin_percent) == (
        D("421.00"), D("79.99"), D("430.00"), D("2.093"), D("35.867"))

    # What comes to be invoiced is at the new price, and adds up to the new total.
    assert run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY).amount_total == D("297.50")
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, shipment.shipment_number)
    assert run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY).amount_total == D("203.49")
    assert order(engine, number).amount_invoiced == D("500.99")
    assert books_balance(engine)


def test_a_lower_price_on_a_partly_invoiced_line_credits_the_difference_with_tax(sw):
    engine, world = sw
    number = quote(engine, line(SCARCE, "8"))  # 5 on hand
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    first = run(engine, orders.create_shipment, number, 1, today=TODAY)
    ship(engine, first.shipment_number)
    # Delivered policy: the 5 shipped are invoiced, 5 × 89.99 = 449.95 + 85.49 VAT.
    assert run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY).amount_total == D("535.44")

    result = amend(engine, number, line(SCARCE, "8", unit_price=D("80.00")))

    # The 5 invoiced get 9.99 each back: 49.95 + 9.49 VAT (85.49 − 76.00); the line is 8 × 80.00 now.
    assert result.summary == f"{SCARCE} price 89.99 → 80.00"
    assert (result.credit_note_number, result.credit_note_amount) == ("CRN-000001", D("59.44"))
    assert note_rows(engine, "CRN-000001") == [(D("5"), D("9.99"), D("49.95"), D("9.49"))]
    scarce = order_lines(engine, number)[SCARCE]
    assert (scarce.unit_price, scarce.manual_price, scarce.subtotal, scarce.tax_amount, scarce.qty_invoiced) == (
        D("80.00"), True, D("640.00"), D("121.60"), D("5"))
    assert result.amount_total == D("761.60")
    assert docs(engine, number) == [("INV-000001", "invoice", D("535.44"), D("476.00")),
                                    ("CRN-000001", "credit_note", D("59.44"), D("0.00"))]
    # The ledger: the credit takes 49.95 off revenue and 9.49 off output VAT; the customer owes 5 × 80.00 + VAT.
    assert balances(engine, "1100", "4000", "2200") == {"1100": D("476.00"), "4000": D("-400.00"),
                                                          "2200": D("-76.00")}
    assert order(engine, number).amount_invoiced == D("476.00") and books_balance(engine)

    # The 3 still to come are invoiced at 80.00, completing the line to the cent: 240.00 + 45.60.
    run(engine, post_move, MoveRequest(key="PO-amend/1", product_id=world.product_id(SCARCE), quantity=D("3"),
                                       source_location_id=world.supplier_location_id,
                                       dest_location_id=world.stock_location_id, unit_cost=D("60")))
    assert run(engine, orders.reserve_order, number).fully_reserved
    second = run(engine, orders.create_shipment, number, 2, today=TODAY)
    ship(engine, second.shipment_number)
    assert run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY).amount_total == D("285.60")
    assert balances(engine, "1100", "4000", "2200") == {"1100": D("761.60"), "4000": D("-640.00"),
                                                          "2200": D("-121.60")}
    assert order(engine, number).amount_invoiced == order(engine, number).amount_total == D("761.60")
    assert books_balance(engine)


def test_fewer_units_at_a_lower_price_credits_the_units_and_the_price_on_their_own_rows(sw):
    engine, world = sw
    number = quote(engine, line(LAMP, "25"), line(CABLE, "10"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    assert run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY).amount_total == D("1338.75")

    result = amend(engine, number, line(LAMP, "12", unit_price=D("40.00")), line(CABLE, "10"))

    # 13 lamps no longer ordered: 585.00 + 111.15; the 12 kept are 5.00 cheaper: 60.00 + 11.40.
    assert result.summary == f"{LAMP} 25 → 12, price 45.00 → 40.00"
    assert note_rows(engine, result.credit_note_number) == [(D("13"), D("45.00"), D("585.00"), D("111.15")),
                                                            (D("12"), D("5.00"), D("60.00"), D("11.40"))]
    assert result.credit_note_amount == D("767.55")
    lamp = order_lines(engine, number)[LAMP]
    assert (lamp.quantity, lamp.qty_invoiced, lamp.subtotal, lamp.tax_amount) == (D("12"), D("12"), D("480.00"),
                                                                                  D("91.20"))
    # What stays invoiced is exactly the 12 lamps at 40.00: 480.00 + 91.20.
    row = order(engine, number)
    assert (row.amount_invoiced, row.amount_total) == (D("571.20"), D("678.30"))  # + 10 cables 90.00 + 17.10
    assert books_balance(engine)


def test_a_higher_price_on_invoiced_units_is_refused_on_the_rest_it_is_credit_checked(sw):
    engine, world = sw
    number = quote(engine, line(LAMP, "5"), line(CABLE, "10"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)  # the 5 lamps at 50.00
    before = written(engine)

    with pytest.raises(orders.RepricingRefused) as err:
        amend(engine, number, line(LAMP, "5", unit_price=D("55.00")), line(CABLE, "10"))
    assert str(err.value) == (
        f"line 1 ({LAMP}): 5 are invoiced already at 50.00 each, and an amendment does not raise the price of "
        "invoiced units (distributors do not send a second invoice for a price difference): cancel the order and "
        "invoice it again at 55.00, or keep the price")
    with pytest.raises(orders.RepricingRefused, match="5 are invoiced already at 50.00"):  # raised at that price
        amend(engine, number, line(LAMP, "8", unit_price=D("55.00")), line(CABLE, "10"))
    assert written(engine) == before and order(engine, number).version == 1

    # The cables are not invoiced yet: their price may go up (9.00 → 9.50: 95.00 + 18.05).
    result = amend(engine, number, line(LAMP, "5"), line(CABLE, "10", unit_price=D("9.50")))
    assert (result.summary, result.amount_total, result.credit_note_number) == (
        f"{CABLE} price 9.00 → 9.50", D("410.55"), None)
    assert books_balance(engine)

    # A rise counts against the credit limit like a raise in quantity. Tight Credit KG: 80 cables at list 10.00
    # are 952.00 of its 1,000.00; at 11.00 they would be 1,047.20.
    tight = quote(engine, line(CABLE, "80"), customer="C-3000")
    confirm(engine, tight)
    before = written(engine)
    with pytest.raises(orders.CreditLimitExceeded, match="exposure of 1047.20 would exceed the credit limit 1000.00"):
        amend(engine, tight, line(CABLE, "80", unit_price=D("11.00")))
    assert written(engine) == before and order(engine, tight).amount_total == D("952.00")
    assert amend(engine, tight, line(CABLE, "80", unit_price=D("10.50"))).amount_total == D("999.60")


def publish_quote_policy(engine) -> None:
    with Session(engine) as s, s.begin():  # discounts off the agreed prices above 10 % need a sales manager
        publish(s, create_draft(s, two_step_quote_policy(), author="paula.designer", effective_from=TODAY),
                publisher="peter.designer")


def test_a_price_beyond_what_the_approval_policy_allows_asks_for_approval_and_writes_nothing(sw):
    engine, world = sw
    publish_quote_policy(engine)
    number = quote(engine, line(CABLE, "20"), line(LAMP, "5"))  # agreed: 180.00 + 250.00, cost 120.00 + 150.00
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    before = written(engine)

    # Cables at 6.00: 370.00 for 430.00 agreed is 13.953 % off, margin 100 / 370.
    with pytest.raises(orders.AmendmentNeedsApproval) as err:
        amend(engine, number, line(CABLE, "20", unit_price=D("6.00")), line(LAMP, "5"))
    rule = ("the quote approval policy (version 1) asks for approval when discount % > 10 (discount>10: Sales "
            "manager approval)")
    assert str(err.value) == (f"the new prices take order {number} to 13.953 % off the agreed prices (margin "
                              f"27.027 %), and {rule}: the amendment needs approval")
    asked = err.value.approval
    assert (asked.policy_version, asked.rule_ids, asked.reason, asked.summary) == (
        1, ("discount>10",), rule, f"{CABLE} price 9.00 → 6.00")
    # What the approvers judge: the amended order's facts (as a new quote's), and each changed line before → after.
    assert (asked.facts.amount, asked.facts.discount_percent, asked.facts.margin_percent, asked.facts.requester) == (
        D("370.00"), D("13.953"), D("27.027"), "sam.sales")
    assert (asked.amount_total_before, asked.amount_total) == (D("511.70"), D("440.30"))  # 370.00 + 70.30 VAT
    assert asked.lines == (AmendedLine(1, CABLE, D("20"), D("20"), D("9.00"), D("6.00"), D("0"), D("0"),
                                       D("120.00")),)
    assert written(engine) == before and order(engine, number).version == 1
    assert order_lines(engine, number)[CABLE].unit_price == D("9.00")

    # A discount and a new line priced by hand count as the rep's prices too: 4.00 a cable is past both rules.
    with pytest.raises(orders.AmendmentNeedsApproval, match=r"discount % > 20 \(discount>20: CFO approval\)") as err:
        amend(engine, number, line(CABLE, "20", unit_price=D("4.00")), line(LAMP, "5"))
    assert err.value.approval.rule_ids == ("discount>10", "discount>20")
    with pytest.raises(orders.AmendmentNeedsApproval, match="to 13.844 % off") as err:  # 18.00 for 89.99
        amend(engine, number, line(CABLE, "20"), line(LAMP, "5"), line(SCARCE, "1", discount_percent=D("80")))
    assert err.value.approval.lines == (AmendedLine(3, SCARCE, D("0"), D("1"), None, D("89.99"), None, D("80"),
                                                    D("18.00")),)
    assert written(engine) == before and order(engine, number).version == 1

    # 7.00: 390.00 is 9.302 % off, within the policy.
    result = amend(engine, number, line(CABLE, "20", unit_price=D("7.00")), line(LAMP, "5"))
    assert (result.version, result.quote.concession_percent, result.amount_total) == (2, D("9.302"), D("464.10"))
    assert result.approval_needed is None


def test_an_approved_amendment_applies_without_asking_the_policy_again(sw):
    engine, world = sw
    publish_quote_policy(engine)
    number = quote(engine, line(CABLE, "20"), line(LAMP, "5"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)  # the 5 lamps: 250.00 + 47.50

    # Lamps at 40.00 (80 % of the agreed 50.00): 380.00 for 430.00 is 11.628 % off. Approved, it applies: the 5
    # invoiced lamps get 10.00 each back, 50.00 + 9.50 VAT, and the trail names the approval and who gave it.
    cheaper = (line(CABLE, "20"), line(LAMP, "5", unit_price=D("40.00")))
    with pytest.raises(orders.AmendmentNeedsApproval):
        amend(engine, number, *cheaper)
    result = amend(engine, number, *cheaper, approval_key=f"amendment:{number}:1", approved_by=("mia.manager",))
    assert (result.version, result.amount_total, result.credit_note_amount, result.approval_needed) == (
        2, D("452.20"), D("59.50"), None)
    assert order_lines(engine, number)[LAMP].unit_price == D("40.00")
    assert order(engine, number).amount_invoiced == D("238.00")  # 5 × 40.00 + 19 %
    with Session(engine) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "order.amended")).one()
        assert (event.actor, event.data["approval_key"], event.data["approved_by"]) == (
            "sam.sales", f"amendment:{number}:1", ["mia.manager"])
    # A repeat by the key changes nothing (the workflow's retry).
    again = amend(engine, number, *cheaper, approval_key=f"amendment:{number}:1", approved_by=("mia.manager",))
    assert (again.version, again.credit_note_number) == (2, result.credit_note_number)
    assert books_balance(engine)


def test_every_other_refusal_comes_before_the_approval(sw):
    engine, world = sw
    publish_quote_policy(engine)
    # Tight Credit KG: list prices are its agreed prices, limit 1,000.00; 80 cables at 10.00 are 952.00.
    number = quote(engine, line(CABLE, "80"), customer="C-3000")
    confirm(engine, number)
    before = written(engine)
    # 100 at 8.90 is 11 % off (the policy would ask) but 1,059.10 is over the limit: refused, not sent to approval.
    with pytest.raises(orders.CreditLimitExceeded, match="exposure of 1059.10 would exceed the credit limit"):
        amend(engine, number, line(CABLE, "100", unit_price=D("8.90")))
    # Approved or not, the credit limit holds.
    with pytest.raises(orders.CreditLimitExceeded):
        amend(engine, number, line(CABLE, "100", unit_price=D("8.90")), approval_key=f"amendment:{number}:1")
    assert written(engine) == before and order(engine, number).version == 1
    # 85 at 8.90 (902.37) is within the limit: only the policy stands in the way.
    with pytest.raises(orders.AmendmentNeedsApproval):
        amend(engine, number, line(CABLE, "85", unit_price=D("8.90")))


def test_unapplied_amendment_answers_with_the_order_as_it_stands(sw):
    engine, world = sw
    publish_quote_policy(engine)
    number = quote(engine, line(CABLE, "20"), line(LAMP, "5"))
    confirm(engine, number)
    with pytest.raises(orders.AmendmentNeedsApproval) as err:
        amend(engine, number, line(CABLE, "20", unit_price=D("6.00")), line(LAMP, "5"))
    result = read(engine, orders.unapplied_amendment, number, err.value.approval)
    assert (result.version, result.amount_total, result.released, result.credit_note_number) == (
        1, D("511.70"), D("0"), None)
    assert (result.summary, result.approval_needed, result.invoice.invoice_number) == (
        f"{CABLE} price 9.00 → 6.00", err.value.approval, None)
    assert result.quote.lines[0].unit_price == D("9.00")


def test_rep_notices_go_to_the_rep_alone(sw):
    engine, world = sw
    number = quote(engine, line(CABLE, "20"))  # Elektro Muster has an e-mail address: it hears of everything else
    added = run(engine, orders.queue_order_notice, number, message_key=f"{number}/amend/1:amendment_rejected",
                event="amendment_rejected", detail="too cheap", public_url="http://x")
    with Session(engine) as s:
        sent = s.scalars(select(OutboxMessage).where(OutboxMessage.message_key.startswith(f"{number}/amend/1"))).all()
        assert added == 1 and [(m.message_key, m.recipient) for m in sent] == [
            (f"{number}/amend/1:amendment_rejected:sam.sales", "sam.sales@tradeflow.test")]
        assert sent[0].subject == f"Order {number}: amendment not approved" and "too cheap" in sent[0].body


def test_a_removed_line_stays_at_zero_with_its_units_released_and_credited(sw):
    engine, world = sw
    number = quote(engine, line(LAMP, "5"), line(CABLE, "10"))
    confirm(engine, number)
    run(engine, orders.reserve_order, number)
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)  # the lamps: 297.50

    result = amend(engine, number, line(CABLE, "10"))

    # The lamp line stays (line 1, quantity 0): its 5 are released and its invoice is credited in full.
    assert (result.summary, result.released, result.credit_note_amount, result.amount_total) == (
        f"{LAMP} removed", D("5"), D("297.50"), D("107.10"))
    lamp = order_lines(engine, number)[LAMP]
    assert (lamp.line_no, lamp.quantity, lamp.subtotal, lamp.qty_reserved, lamp.qty_invoiced) == (
        1, D("0"), D("0.00"), D("0"), D("0"))
    with Session(engine) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "order.amended")).one()
        assert event.data["removed"] == [1]  # what the order page reads to say who removed it, and when
    assert quant_totals(engine, world.product_id(LAMP)) == (D("20"), D("0")) and books_balance(engine)

    # Sold again later, the SKU takes its old line back, priced afresh and invoiced (ordered policy).
    again = amend(engine, number, line(CABLE, "10"), line(LAMP, "3"), key="k2", invoice_key=f"{number}/inv/2")
    lamp = order_lines(engine, number)[LAMP]
    assert (again.summary, lamp.line_no, lamp.quantity, lamp.unit_price, lamp.qty_reserved) == (
        f"{LAMP} 0 → 3", 1, D("3"), D("50.00"), D("3"))
    assert (again.invoice.amount_total, order(engine, number).amount_invoiced) == (D("178.50"), D("178.50"))
