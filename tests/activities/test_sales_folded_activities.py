"""The folded quote-to-cash activities (patch "q2c-folded-steps"): accept_order, confirm_order and settle_order
each do in one transaction what several activities did in a row. On a real SQLite file: the figures, statuses,
invoices and notices they write, and a retry (Temporal runs an activity again when its answer is lost) that
changes nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities import build_activities
from activities.sales import SalesActivities
from models import orders
from models.approvals import OutboxMessage
from models.sales import SalesOrder
from models.stock import ReservationDemand
from tests.activities.test_sales_activities import twice
from tests.sales_world import CABLE, LAMP, TIGHT_CUSTOMER, build_sales_world_in
from workflows.contracts import (
    ConfirmOrderInput,
    CreateShipmentInput,
    OrderNotifyInput,
    QuoteLineInput,
    QuoteRef,
    RecordShipmentStepInput,
    SetOrderStatusInput,
    SettleOrderInput,
)


def _quote(engine, customer: str, lines: tuple[QuoteLineInput, ...]) -> str:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return orders.create_quote(s, orders.QuoteDraft(customer_code=customer, lines=lines), rep="sam.sales",
                                   today=date.today()).number


@pytest.fixture
def folded(engine):
    world = build_sales_world_in(engine)
    # Contractor prices: 10 cables at 9.00 (invoiced when delivered), 2 lamps at 50.00 (invoiced when ordered).
    number = _quote(engine, world.customer_code, (QuoteLineInput(CABLE, D("10")), QuoteLineInput(LAMP, D("2"))))
    a = SalesActivities(engine, "http://tradeflow.test")
    ActivityEnvironment().run(a.set_order_status, SetOrderStatusInput(number, "sent"))
    return a, engine, number


def _status(engine, number: str) -> str:
    with Session(engine) as s:
        return s.scalars(select(SalesOrder.status).where(SalesOrder.number == number)).one()


def _mail_keys(engine, number: str) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(OutboxMessage.message_key).where(OutboxMessage.message_key.contains(number))))


def _held(engine, number: str) -> D:
    with Session(engine) as s:
        return sum(s.scalars(select(ReservationDemand.reserved)
                             .where(ReservationDemand.demand_key.startswith(f"{number}/"))).all(), D(0))


def test_a_straight_through_order_through_the_folded_activities(folded):
    a, engine, number = folded

    accepted = twice(engine, a.accept_order, QuoteRef(number))
    # Exposure: 10 × 9.00 + 2 × 50.00 = 190.00 untaxed, 226.10 with 19 % VAT; the limit is 5,000.
    assert (accepted.credit.exposure, accepted.credit.over_limit) == (D("226.10"), False)
    assert (accepted.reserved.fully_reserved, accepted.reserved.shortfall) == (True, D("0"))
    assert _held(engine, number) == D("12")

    confirmed = twice(engine, a.confirm_order, ConfirmOrderInput(number, "orders@muster.test", "confirmed",
                                                                 f"{number}/inv/1"))
    assert _status(engine, number) == "confirmed"
    assert confirmed.invoice.amount_total == D("119.00")  # the lamps only: ordered policy
    assert (confirmed.balance.amount_invoiced, confirmed.balance.amount_due, confirmed.balance.fully_delivered) == (
        D("119.00"), D("119.00"), False)
    lamp_invoice = confirmed.invoice.invoice_number
    assert _mail_keys(engine, number) == {f"{number}:confirmation:customer", f"{number}:confirmation:sam.sales"}
    with Session(engine) as s:
        invoice_mails = set(s.scalars(select(OutboxMessage.message_key)
                                      .where(OutboxMessage.message_key.startswith(f"{lamp_invoice}:"))))
    assert invoice_mails == {f"{lamp_invoice}:sent:customer", f"{lamp_invoice}:sent:sam.sales"}

    # With the shipment still open, settling reads the balance and moves nothing.
    shipment = ActivityEnvironment().run(a.create_shipment, CreateShipmentInput(number, 1))
    waiting = twice(engine, a.settle_order, SettleOrderInput(number, close=False))
    assert (waiting.invoices, waiting.status, waiting.balance.amount_due) == ((), "confirmed", D("119.00"))

    for step in ("picked", "packed", "shipped"):
        ActivityEnvironment().run(a.record_shipment_step, RecordShipmentStepInput(
            shipment.shipment_number, step, "walter.warehouse"))
    shipped = OrderNotifyInput(number, f"{shipment.shipment_number}:shipped", "shipment", "10 CABLE-100, 2 LAMP-200")
    settled = twice(engine, a.settle_order, SettleOrderInput(number, (shipped,), invoice_key=f"{number}/inv/2",
                                                             rest_invoice_key=f"{number}/inv/2", close=True))
    assert [i.amount_total for i in settled.invoices] == [D("107.10")]  # 10 × 9.00 + 19 % VAT
    assert (settled.status, settled.balance.fully_delivered, settled.balance.fully_invoiced) == (
        "delivered", True, True)
    assert settled.balance.amount_due == D("226.10")
    assert _status(engine, number) == "delivered"
    assert {f"{shipment.shipment_number}:shipped:customer", f"{shipment.shipment_number}:shipped:sam.sales"} \
        <= _mail_keys(engine, number)

    # Paid: the next settlement closes the order, and only then.
    with Session(engine) as s, s.begin():
        orders.record_payment(s, reference="BANK-F1", customer_code="C-1000", amount=D("226.10"),
                              payment_date=date.today(), recorded_by="fiona.finance")
    done = twice(engine, a.settle_order, SettleOrderInput(number, rest_invoice_key=f"{number}/inv/3", close=True))
    assert (done.invoices, done.status, done.balance.amount_due, done.balance.amount_paid) == (
        (), "done", D("0.00"), D("226.10"))
    assert _status(engine, number) == "done"
    assert _held(engine, number) == 0


def test_an_order_over_the_credit_limit_reserves_nothing_on_acceptance(engine):
    build_sales_world_in(engine)
    # Tight Credit KG may owe 1,000.00; 150 cables at list price are more than that.
    number = _quote(engine, TIGHT_CUSTOMER, (QuoteLineInput(CABLE, D("150")),))
    a = SalesActivities(engine, "http://tradeflow.test")
    ActivityEnvironment().run(a.set_order_status, SetOrderStatusInput(number, "sent"))
    accepted = twice(engine, a.accept_order, QuoteRef(number))
    assert accepted.credit.over_limit and accepted.credit.limit == D("1000.00")
    assert accepted.credit.exposure > D("1000.00")
    assert accepted.reserved is None
    assert _held(engine, number) == 0
    assert _status(engine, number) == "sent"


def test_the_worker_registers_the_folded_activities(engine):
    names = {fn.__name__ for fn in build_activities(engine)}
    assert {"accept_order", "confirm_order", "settle_order"} <= names
