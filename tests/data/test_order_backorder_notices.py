"""models/orders: cancelling the backordered rest of an order (cancel_backorder) and the order notices
(queue_order_notice), on SQLite and PostgreSQL. Figures from tests/sales_world.py (contractor prices: CAB-100
9.00, LAMP-200 45.00 from 10 pieces, SCARCE-300 89.99; VAT 19 %)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.accounting import trial_balance
from models.approvals import OutboxMessage
from models.ledger import JournalEntry
from models.records import AuditEvent
from models.sales import CustomerInvoice
from models.stock import Quant, ReservationDemand
from models.users import Group, User, UserGroup
from tests.sales_world import CABLE, DROP, LAMP, SCARCE, build_sales_world_in
from workflows.contracts import OrderStatus, QuoteLineInput

TODAY = date(2025, 3, 3)


def run(engine, fn, *args, **kw):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return fn(s, *args, **kw)


@pytest.fixture
def sw(any_engine) -> tuple:
    return any_engine, build_sales_world_in(any_engine)


@pytest.fixture
def lite(engine) -> tuple:
    return engine, build_sales_world_in(engine)


def confirmed_quote(engine, *lines, customer="C-1000") -> str:
    draft = orders.QuoteDraft(customer_code=customer,
                              lines=tuple(QuoteLineInput(sku, D(q), drop_ship=ds) for sku, q, ds in lines))
    number = run(engine, orders.create_quote, draft, rep="sam.sales", today=TODAY).number
    for status in (OrderStatus.sent, OrderStatus.confirmed):
        run(engine, orders.set_status, number, status, actor="sam.sales")
    return number


def line_figures(engine, number) -> dict[str, tuple[D, D, D, D]]:
    """sku -> (delivered, cancelled, invoiced, reserved)."""
    with Session(engine) as s:
        state = orders.quote_state(s, number)
        return {ln.sku: (ln.qty_delivered, ln.qty_cancelled, ln.qty_invoiced, ln.qty_reserved) for ln in state.lines}


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_cancel_backorder_cancels_only_the_unreserved_rest_and_credits_what_was_invoiced(sw):
    engine, world = sw
    # LAMP 25 (20 in stock, ordered policy), SCARCE 8 (5 in stock), CAB 10 (all in stock), DROP 1 drop-ship.
    number = confirmed_quote(engine, (LAMP, "25", False), (SCARCE, "8", False), (CABLE, "10", False),
                             (DROP, "1", True))
    run(engine, orders.reserve_order, number)
    invoice = run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)
    assert invoice.amount_total == D("1338.75")  # 25 × 45.00 + 19 %
    shipment = run(engine, orders.create_shipment, number, 1, today=TODAY)
    for step in ("picked", "packed", "shipped"):
        run(engine, orders.record_shipment_step, shipment.shipment_number, step, actor="walter.warehouse")
    # A second pass cannot reserve more (nothing arrived); 5 lamps and 3 scarce are the backorder.
    assert run(engine, orders.reserve_order, number).shortfall == D("8")

    result = run(engine, orders.cancel_backorder, number, actor="orders@muster.test", key=f"{number}/cancel-rest/1",
                 today=TODAY)
    assert result.cancelled == D("8")
    # 5 lamps at 45.00 were invoiced and will never come: 225.00 + 42.75 VAT credited.
    assert (result.credit_note_number, result.credit_note_amount) == ("CRN-000001", D("267.75"))
    assert line_figures(engine, number) == {
        LAMP: (D("20"), D("5"), D("20"), D("0")),
        SCARCE: (D("5"), D("3"), D("0"), D("0")),
        CABLE: (D("10"), D("0"), D("0"), D("0")),  # delivered policy: invoiced once the workflow invoices
        DROP: (D("0"), D("0"), D("0"), D("0")),  # a drop-ship line is no backorder: it stays to be delivered
    }
    with Session(engine) as s:
        demands = dict(s.execute(select(ReservationDemand.demand_key, ReservationDemand.requested)
                                 .where(ReservationDemand.demand_key.in_([f"{number}/L1", f"{number}/L2"]))).all())
        docs = {i.kind: (i.amount_total, i.amount_residual) for i in s.scalars(select(CustomerInvoice))}
    assert demands == {f"{number}/L1": D("0"), f"{number}/L2": D("0")}  # they no longer ask for the rest
    assert docs == {"invoice": (D("1338.75"), D("1071.00")), "credit_note": (D("267.75"), D("0.00"))}
    balance = run(engine, orders.order_balance, number)
    # Still to invoice: the cables (on delivery, by the workflow) and the drop-ship item (not delivered yet).
    assert (balance.fully_invoiced, balance.amount_due) == (False, D("1071.00"))
    debit, credit = run(engine, trial_balance)
    assert debit == credit

    # A retry (same key) writes nothing and answers the same; a later reserve pass reserves nothing again.
    rows = (count(engine, CustomerInvoice), count(engine, JournalEntry), count(engine, AuditEvent))
    again = run(engine, orders.cancel_backorder, number, actor="orders@muster.test",
                key=f"{number}/cancel-rest/1", today=TODAY)
    assert (again.cancelled, again.credit_note_number, again.credit_note_amount) == (
        result.cancelled, result.credit_note_number, result.credit_note_amount)
    assert (count(engine, CustomerInvoice), count(engine, JournalEntry), count(engine, AuditEvent)) == rows
    reserved = run(engine, orders.reserve_order, number)
    assert (reserved.fully_reserved, reserved.shortfall) == (True, D("0"))


def test_cancel_backorder_keeps_what_is_reserved_for_an_open_shipment(sw):
    engine, world = sw
    number = confirmed_quote(engine, (SCARCE, "8", False), customer="C-2000")
    run(engine, orders.reserve_order, number)
    run(engine, orders.create_shipment, number, 1, today=TODAY)  # the 5 reserved, not shipped yet
    result = run(engine, orders.cancel_backorder, number, actor="sam.sales", key=f"{number}/cancel-rest/1",
                 today=TODAY)
    assert (result.cancelled, result.credit_note_number) == (D("3"), None)
    assert line_figures(engine, number) == {SCARCE: (D("0"), D("3"), D("0"), D("5"))}
    with Session(engine) as s:
        on_hand, reserved = s.execute(select(func.sum(Quant.quantity), func.sum(Quant.reserved))
                                      .where(Quant.product_id == world.product_id(SCARCE))).one()
    assert (D(on_hand), D(reserved)) == (D("5"), D("5"))


def test_cancel_backorder_is_refused_outside_a_confirmed_or_asking_order(lite):
    engine, _ = lite
    draft = orders.QuoteDraft(customer_code="C-1000", lines=(QuoteLineInput(CABLE, D("4")),))
    number = run(engine, orders.create_quote, draft, rep="sam.sales", today=TODAY).number
    with pytest.raises(orders.OrderStateError):
        run(engine, orders.cancel_backorder, number, actor="sam.sales", key=f"{number}/cancel-rest/1", today=TODAY)
    with pytest.raises(orders.OrderInputError):
        run(engine, orders.cancel_backorder, number, actor="sam.sales", key="", today=TODAY)


def test_collections_notice_goes_to_every_finance_member_once(sw):
    engine, _ = sw
    number = confirmed_quote(engine, (CABLE, "4", False))
    with Session(engine, expire_on_commit=False) as s, s.begin():
        # A second finance person, and one who left: only active members are told.
        finance = s.scalars(select(Group).where(Group.name == "finance")).one()
        for username, active in (("frank.finance", True), ("former.finance", False)):
            user = User(username=username, full_name=username, email=f"{username}@tradeflow.test",
                        password_hash="!", active=active)
            s.add(user)
            s.flush()
            s.add(UserGroup(user_id=user.id, group_id=finance.id))
    key = f"{number}:collections:2025-04-02:finance"
    added = run(engine, orders.queue_order_notice, number, message_key=key, event="collections",
                detail="42.84 overdue since 2025-04-02", public_url="http://tradeflow.test/")
    assert added == 2
    assert run(engine, orders.queue_order_notice, number, message_key=key, event="collections",
               detail="again", public_url="http://tradeflow.test") == 0
    with Session(engine) as s:
        mails = {m.message_key: (m.recipient, m.subject, m.link) for m in s.scalars(select(OutboxMessage))}
        body = s.scalars(select(OutboxMessage.body).where(OutboxMessage.message_key == f"{key}:fiona.finance")).one()
    subject = f"Collections: order {number} is overdue after the last reminder"
    link = f"http://tradeflow.test/orders/{number}"
    assert mails == {f"{key}:fiona.finance": ("fiona.finance@tradeflow.test", subject, link),
                     f"{key}:frank.finance": ("frank.finance@tradeflow.test", subject, link)}
    assert "C-1000 Elektro Muster GmbH <orders@muster.test>" in body and "42.84 overdue since 2025-04-02" in body
    assert "Sales rep: sam.sales" in body and f"Open the order: {link}" in body

    with pytest.raises(orders.OrderInputError):
        run(engine, orders.queue_order_notice, number, message_key="k", event="fireworks", public_url="http://x")
