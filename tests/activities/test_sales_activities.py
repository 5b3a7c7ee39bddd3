"""Sales activities on a real SQLite file: each one called twice (a Temporal retry) changes nothing the second
time, and business refusals are non-retryable ApplicationErrors that name their type and field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import build_activities
from activities.sales import SalesActivities
from models import orders
from models.approvals import OutboxMessage
from models.stock import Quant
from tests.sales_world import CABLE, LAMP, SCARCE, build_sales_world_in
from workflows.contracts import (
    Actor,
    CancelBackorderInput,
    CancelOrderInput,
    CreateShipmentInput,
    EditQuoteCommand,
    EditQuoteInput,
    InvoiceInput,
    OrderNotifyInput,
    QuoteLineInput,
    QuoteRef,
    RecordShipmentStepInput,
    SetOrderStatusInput,
)

SAM = Actor("sam.sales", ("sales",))


@pytest.fixture
def acts(engine):
    world = build_sales_world_in(engine)
    draft = orders.QuoteDraft(customer_code="C-1000", lines=(
        QuoteLineInput(CABLE, D("10")), QuoteLineInput(LAMP, D("5")), QuoteLineInput(SCARCE, D("8"))))
    with Session(engine, expire_on_commit=False) as s, s.begin():
        number = orders.create_quote(s, draft, rep="sam.sales", today=date.today()).number
    return SalesActivities(engine, "http://tradeflow.test"), engine, world, number


def snapshot(engine) -> dict:
    """Row counts of every table and the stock figures: what a retry must leave exactly as it was."""
    with Session(engine) as s:
        counts = {t.name: s.scalar(select(func.count()).select_from(t)) for t in SQLModel.metadata.sorted_tables}
        counts["quant"] = [tuple(r) for r in s.execute(select(Quant.quantity, Quant.reserved).order_by(Quant.id))]
    return counts


def twice(engine, fn, arg):
    """Run the activity, then again as a retry; return the first result after checking the retry's."""
    env = ActivityEnvironment()
    first = env.run(fn, arg)
    after_first = snapshot(engine)
    second = env.run(fn, arg)
    assert snapshot(engine) == after_first, f"{fn.__name__} changed the database when retried"
    assert second == first
    return first


def test_every_sales_activity_is_idempotent_when_retried(acts):
    a, engine, world, number = acts
    ref = QuoteRef(number)
    assert twice(engine, a.load_quote, ref).version == 1

    edited = twice(engine, a.edit_quote, EditQuoteInput(number, EditQuoteCommand(
        actor=SAM, lines=(QuoteLineInput(CABLE, D("10")), QuoteLineInput(LAMP, D("10")),
                          QuoteLineInput(SCARCE, D("8"))), expected_version=1)))
    assert (edited.version, edited.amount_untaxed) == (2, D("1259.92"))  # 90 + 450 + 8 × 89.99

    assert twice(engine, a.set_order_status, SetOrderStatusInput(number, "sent")).status == "sent"
    # What the workflow asks (it holds the quote): the status is written, nothing is read back.
    assert twice(engine, a.set_order_status, SetOrderStatusInput(number, "credit_hold", quote=False)) is None
    assert twice(engine, a.load_quote, ref).status == "credit_hold"
    confirmed = twice(engine, a.set_order_status, SetOrderStatusInput(number, "confirmed", actor="sam.sales"))
    assert confirmed.status == "confirmed"

    credit = twice(engine, a.check_credit, ref)
    assert (credit.this_order, credit.exposure, credit.over_limit) == (D("1499.30"), D("1499.30"), False)

    reserved = twice(engine, a.reserve_order, ref)
    assert (reserved.fully_reserved, reserved.shortfall) == (False, D("3"))

    shipment = twice(engine, a.create_shipment, CreateShipmentInput(number, 1))
    assert {ln.sku: ln.quantity for ln in shipment.lines} == {CABLE: D("10"), LAMP: D("10"), SCARCE: D("5")}
    assert twice(engine, a.create_shipment, CreateShipmentInput(number, 2)) is None
    for step in ("picked", "packed", "shipped"):
        state = twice(engine, a.record_shipment_step,
                      RecordShipmentStepInput(shipment.shipment_number, step, "walter.warehouse", "TRACK-1"))
        assert state.status == step

    invoice = twice(engine, a.invoice_order, InvoiceInput(number, f"{number}/inv/1"))
    # delivered: 10 × 9.00 + 10 × 45.00 + 5 × 89.99 = 989.95 untaxed, +188.09 VAT (17.10 + 85.50 + 85.49)
    assert (invoice.invoice_number, invoice.amount_total) == ("INV-000001", D("1178.04"))

    balance = twice(engine, a.order_balance, ref)
    assert (balance.fully_delivered, balance.fully_invoiced, balance.amount_due) == (False, False, D("1178.04"))

    twice(engine, a.notify_order, OrderNotifyInput(number, f"{number}/confirmation", "confirmation", "Thank you."))
    with Session(engine) as s:
        mails = {m.message_key: (m.recipient, m.subject, m.link) for m in s.scalars(select(OutboxMessage))}
    assert mails == {
        f"{number}/confirmation:customer": ("orders@muster.test", f"Order {number} confirmed", ""),
        f"{number}/confirmation:sam.sales": ("sam.sales@tradeflow.test", f"Order {number} confirmed",
                                             f"http://tradeflow.test/orders/{number}"),
    }

    cancelled = twice(engine, a.cancel_order, CancelOrderInput(number, "sam.sales", "customer withdrew"))
    assert (cancelled.released, cancelled.backorders_cancelled, cancelled.shipped_returnable) == (
        D("0"), D("3"), D("25"))
    assert twice(engine, a.load_quote, ref).status == "cancelled"


def test_cancel_backorder_and_the_collections_notice_are_idempotent_when_retried(acts):
    a, engine, world, number = acts
    ActivityEnvironment().run(a.set_order_status, SetOrderStatusInput(number, "sent"))
    ActivityEnvironment().run(a.set_order_status, SetOrderStatusInput(number, "confirmed"))
    ActivityEnvironment().run(a.reserve_order, QuoteRef(number))  # SCARCE: 5 of 8
    result = twice(engine, a.cancel_backorder, CancelBackorderInput(number, "sam.sales", f"{number}/cancel-rest/1"))
    assert (result.cancelled, result.credit_note_number) == (D("3"), None)
    assert {ln.sku: ln.qty_cancelled for ln in result.lines} == {CABLE: D("0"), LAMP: D("0"), SCARCE: D("3")}

    twice(engine, a.notify_order, OrderNotifyInput(number, f"{number}:collections:x:finance", "collections", "late"))
    with Session(engine) as s:
        keys = set(s.scalars(select(OutboxMessage.message_key)))
    assert keys == {f"{number}:collections:x:finance:fiona.finance"}  # finance only: not the customer, not the rep

    ActivityEnvironment().run(a.cancel_order, CancelOrderInput(number, "sam.sales", "withdrawn"))
    assert _refused(a.cancel_backorder, CancelBackorderInput(number, "sam.sales", f"{number}/cancel-rest/2")).type \
        == "OrderStateInvalid"


def _refused(fn, arg) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(fn, arg)
    assert err.value.non_retryable
    return err.value


def test_business_refusals_are_non_retryable_with_type_and_field(acts):
    a, engine, world, number = acts
    assert _refused(a.load_quote, QuoteRef("Q-999999")).type == "OrderNotFound"

    bad = _refused(a.edit_quote, EditQuoteInput(number, EditQuoteCommand(
        actor=SAM, lines=(QuoteLineInput("NOPE-1", D("1")),))))
    assert (bad.type, bad.details[0]) == ("OrderInputInvalid", "lines[0].sku")

    a_edit = EditQuoteInput(number, EditQuoteCommand(actor=SAM, order_discount_percent=D("3"), expected_version=7))
    assert _refused(a.edit_quote, a_edit).type == "StaleVersion"

    ActivityEnvironment().run(a.set_order_status, SetOrderStatusInput(number, "sent"))
    late = _refused(a.edit_quote, EditQuoteInput(number, EditQuoteCommand(actor=SAM, order_discount_percent=D("3"))))
    assert (late.type, late.details[0]) == ("OrderStateInvalid", "sent")
    assert _refused(a.invoice_order, InvoiceInput(number, f"{number}/inv/1")).type == "OrderStateInvalid"
    assert _refused(a.notify_order, OrderNotifyInput(number, "k", "fireworks")).type == "OrderInputInvalid"
    assert _refused(a.record_shipment_step,
                    RecordShipmentStepInput("SHP-NOPE-1", "picked", "walter.warehouse")).details[0] == "shipment_number"


def test_the_worker_registers_the_sales_activities(engine):
    names = {fn.__name__ for fn in build_activities(engine)}
    assert {"load_quote", "edit_quote", "set_order_status", "check_credit", "reserve_order", "create_shipment",
            "record_shipment_step", "invoice_order", "order_balance", "cancel_order", "cancel_backorder",
            "notify_order"} <= names
