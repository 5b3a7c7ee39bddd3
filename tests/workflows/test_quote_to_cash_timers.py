"""QuoteToCash's durable timers on the time-skipping test server: a quote expires at the end of its validity date;
an unpaid invoice gets reminders at the dunning dates, then goes to collections (and finance hears of it); a
ship-complete order finds a receipt nobody signalled on its hourly retry; a customer asked about a backorder who
does not answer within 48 hours gets the default; a shipment late for its promised date is announced once; a credit
hold nobody releases escalates to the CFO, then cancels the order."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities import build_activities
from models.approvals import HumanTask, OutboxMessage
from models.common import utcnow
from models.demo_policies import credit_hold_policy
from models.inventory import MoveRequest, post_move
from models.orders import QuoteDraft, create_quote, record_payment
from models.sales import CustomerInvoice, NumberSequence, SalesOrder, SalesOrderLine, Shipment, ShipmentLine
from models.users import Group, User, UserGroup
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.sales_world import CABLE, SCARCE, build_sales_world_in
from tests.workflows.histories import keep_history
from tests.workflows.test_approval_chain_timers import skipping_env  # noqa: F401  (the fixture)
from workflows.contracts import (
    Actor,
    BackorderChoiceCommand,
    PaymentNotice,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    ShipmentStepCommand,
    q2c_id,
    shipment_id,
)
from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow
from workflows.registry import ALL_WORKFLOWS, workflow_runner

REP = Actor("sam.sales", ("sales",))
WAREHOUSE = Actor("walter.warehouse", ("warehouse",))


@asynccontextmanager
async def running(env, engine):
    queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(env.client, task_queue=queue, workflows=ALL_WORKFLOWS, workflow_runner=workflow_runner(),
                          activities=build_activities(engine), activity_executor=pool):
            yield queue


def quote_for(engine, customer: str, quantity: str, sku: str = CABLE, **draft) -> str:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=uuid.uuid4().int % 900_000 + 100_000))
        s.flush()
        publish_policy(s, two_step_quote_policy())
        return create_quote(s, QuoteDraft(customer, (QuoteLineInput(sku, D(quantity)),), **draft),
                            rep=REP.username, today=utcnow().date()).number


def customer_mails(engine, quote: str) -> list[str]:
    with Session(engine) as s:
        return list(s.scalars(select(OutboxMessage.body).where(OutboxMessage.message_key.startswith(quote))
                              .where(OutboxMessage.message_key.endswith(":customer"))
                              .order_by(OutboxMessage.id)))


async def until(predicate, what: str, timeout: float = 20.0):
    async with asyncio.timeout(timeout):  # a guard against hanging, not a speed assertion
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_quote_not_accepted_expires_at_the_end_of_its_validity_date(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    today = utcnow().date()
    number = quote_for(people_engine, world.customer_code, "10", valid_until=today + timedelta(days=2))
    async with running(skipping_env, people_engine) as queue:
        handle = await skipping_env.client.start_workflow(
            QuoteToCash.run, QuoteToCashInput(number, REP.username, standing_timers=True), id=q2c_id(number),
            task_queue=queue)
        assert await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP)) in ("pending_approval", "sent")
        view = await handle.result()  # time skips to the end of the validity date
    assert view.status == "expired"
    assert [e.what for e in view.timeline][-1] == "quote expired"
    assert view.timeline[-1].at.date() == today + timedelta(days=3)  # midnight after the last valid day
    with Session(people_engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert (order.status, order.accepted_at) == ("expired", None)
        assert order.closed_at is not None


async def test_an_unpaid_invoice_is_reminded_then_goes_to_collections(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    # Cash & Carry pays immediately: the invoice is due the day it is written.
    number = quote_for(people_engine, world.cash_customer_code, "4")
    client = skipping_env.client
    async with running(skipping_env, people_engine) as queue:
        handle = await client.start_workflow(
            QuoteToCash.run, QuoteToCashInput(number, REP.username, standing_timers=True), id=q2c_id(number),
            task_queue=queue)
        await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
        await sent(handle)
        assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "confirmed"
        shipment = client.get_workflow_handle_for(ShipmentWorkflow.run, shipment_id(number, 1))
        for step in ("picked", "packed", "shipped"):
            await shipment.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, step))
        await until(lambda: _status(people_engine, number) == "delivered", "delivered")
        with Session(people_engine) as s:
            invoice = s.scalars(select(CustomerInvoice)).one()
        assert (invoice.amount_total, invoice.due_date) == (D("47.60"), utcnow().date())

        reminders = lambda: [b for b in customer_mails(people_engine, number) if "overdue since" in b]  # noqa: E731
        await skipping_env.sleep(timedelta(days=6))
        assert reminders() == []
        await skipping_env.sleep(timedelta(days=2))  # past due + 7 days
        await until(lambda: len(reminders()) == 1, "first reminder")
        await skipping_env.sleep(timedelta(days=23))  # past due + 30 days: the second, then the final notice
        await until(lambda: len(reminders()) == 3, "all reminders")
        assert ["handed to collections" in body for body in reminders()] == [False, False, True]

        # Collecting is finance's work: every finance member gets the notice, with the order's link.
        finance = finance_people(people_engine)
        assert "fiona.finance" in finance
        key = f"{number}:collections:{invoice.due_date}:finance"
        await until(lambda: len(mails_under(people_engine, key)) == len(finance), "finance notices")
        notices = mails_under(people_engine, key)
        assert {m.message_key: m.recipient for m in notices} == {f"{key}:{u}": e for u, e in finance.items()}
        assert {m.subject for m in notices} == {f"Collections: order {number} is overdue after the last reminder"}
        assert all(f"{world.cash_customer_code} Cash & Carry Meier" in m.body and "47.60 overdue" in m.body
                   and m.link.endswith(f"/orders/{number}") for m in notices)

        with Session(people_engine, expire_on_commit=False) as s, s.begin():
            payment, quotes = record_payment(s, reference="BANK-LATE", customer_code=world.cash_customer_code,
                                             amount=D("47.60"), payment_date=utcnow().date(),
                                             recorded_by="fiona.finance")
        assert quotes == [number]
        await handle.signal(QuoteToCash.payment_received, PaymentNotice("BANK-LATE", payment.customer_id,
                                                                        payment.amount))
        view = await handle.result()
        await keep_history(handle, "q2c_dunning_collections_paid_standing")
    assert view.status == "done"
    whats = [e.what for e in view.timeline]
    assert whats[-6:] == ["payment reminder 1", "payment reminder 2", "payment reminder 3", "handed to collections",
                          "payment received", "order done"]
    with Session(people_engine) as s:
        assert s.scalars(select(CustomerInvoice.status)).one() == "paid"
    assert _status(people_engine, number) == "done"


async def sent(handle) -> None:
    """Wait until the workflow itself is at "sent". Not the row: the row is written by the activity a moment
    before the workflow takes its result, and an accept sent in that moment is refused as too early."""
    async with asyncio.timeout(20.0):  # a guard against hanging, not a speed assertion
        while (await handle.query(QuoteToCash.view)).status != "sent":
            await asyncio.sleep(0.05)


def _status(engine, number: str) -> str:
    with Session(engine) as s:
        return s.scalars(select(SalesOrder.status).where(SalesOrder.number == number)).one()


def finance_people(engine) -> dict[str, str]:
    with Session(engine) as s:
        return dict(s.execute(select(User.username, User.email).join(UserGroup, UserGroup.user_id == User.id)
                              .join(Group, Group.id == UserGroup.group_id)
                              .where(Group.name == "finance", User.active.is_(True))).all())


def mails_under(engine, key: str) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.message_key.startswith(f"{key}:"))
                              .order_by(OutboxMessage.id)))


def shipped_lines(engine, number: str) -> list[tuple[int, str, D]]:
    """(seq, status, quantity) per shipment line of the order."""
    with Session(engine) as s:
        return [(seq, st, D(q)) for seq, st, q in s.execute(
            select(Shipment.seq, Shipment.status, ShipmentLine.quantity)
            .join(ShipmentLine, ShipmentLine.shipment_id == Shipment.id)
            .where(Shipment.number.startswith(f"SHP-{number}-")).order_by(Shipment.seq, ShipmentLine.id)).all()]


def order_line(engine, number: str) -> SalesOrderLine:
    with Session(engine) as s:
        return s.scalars(select(SalesOrderLine).join(SalesOrder, SalesOrder.id == SalesOrderLine.order_id)
                         .where(SalesOrder.number == number)).one()


async def accepted(client, queue, engine, number: str, expected: str):
    handle = await client.start_workflow(QuoteToCash.run, QuoteToCashInput(number, REP.username, standing_timers=True),
                                         id=q2c_id(number), task_queue=queue)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await sent(handle)
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == expected
    return handle


async def ship_all(client, number: str, seq: int) -> None:
    shipment = client.get_workflow_handle_for(ShipmentWorkflow.run, shipment_id(number, seq))
    for step in ("picked", "packed", "shipped"):
        await shipment.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, step))


async def paid(engine, handle, number: str, customer: str, amount: str, reference: str):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        payment, quotes = record_payment(s, reference=reference, customer_code=customer, amount=D(amount),
                                         payment_date=utcnow().date(), recorded_by="fiona.finance")
    assert quotes == [number]
    await handle.signal(QuoteToCash.payment_received, PaymentNotice(reference, payment.customer_id, payment.amount))
    return await handle.result()


async def test_a_ship_complete_order_finds_an_unsignalled_receipt_on_its_hourly_retry(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    # Tight Credit KG ships complete: 8 scarce items, 5 on hand; nothing ships until all 8 are there.
    number = quote_for(people_engine, world.tight_customer_code, "8", sku=SCARCE)
    client = skipping_env.client
    async with running(skipping_env, people_engine) as queue:
        handle = await accepted(client, queue, people_engine, number, "confirmed")
        assert order_line(people_engine, number).qty_reserved == D("5")
        # The receipt is posted, and nobody tells the order.
        with Session(people_engine) as s, s.begin():
            post_move(s, MoveRequest(key="test:receipt:SCARCE:quiet", product_id=world.product_id(SCARCE),
                                     quantity=D("3"), source_location_id=world.supplier_location_id,
                                     dest_location_id=world.stock_location_id, unit_cost=D("60.00")))
        await skipping_env.sleep(timedelta(minutes=50))
        assert shipped_lines(people_engine, number) == []  # not yet: the retry is hourly
        await skipping_env.sleep(timedelta(minutes=15))
        await until(lambda: shipped_lines(people_engine, number) != [], "the shipment")
        assert shipped_lines(people_engine, number) == [(1, "pending", D("8"))]  # all of it, at once

        await ship_all(client, number, 1)
        await until(lambda: _status(people_engine, number) == "delivered", "delivered")
        view = await paid(people_engine, handle, number, world.tight_customer_code, "952.00", "BANK-QUIET")
        await keep_history(handle, "q2c_ship_complete_hourly_retry_standing")
    assert view.status == "done"
    whats = [e.what for e in view.timeline]
    assert "shipment 2 created" not in whats and whats.count("backorder") == 1
    line = order_line(people_engine, number)
    assert (line.qty_delivered, line.qty_invoiced, line.qty_reserved) == (D("8"), D("8"), D("0"))
    assert shipped_lines(people_engine, number) == [(1, "shipped", D("8"))]


async def test_a_customer_who_does_not_choose_in_48_hours_gets_ship_available(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    # Cash & Carry is asked about backorders: 8 scarce items, 5 on hand.
    number = quote_for(people_engine, world.cash_customer_code, "8", sku=SCARCE)
    client = skipping_env.client
    async with running(skipping_env, people_engine) as queue:
        handle = await accepted(client, queue, people_engine, number, "awaiting_customer")
        asked = mails_under(people_engine, f"{number}:ask-backorder")
        assert sorted(m.message_key.rsplit(":", 1)[1] for m in asked) == ["customer", REP.username]

        await skipping_env.sleep(timedelta(hours=47))
        assert _status(people_engine, number) == "awaiting_customer"
        assert shipped_lines(people_engine, number) == []
        await skipping_env.sleep(timedelta(hours=2))
        await until(lambda: shipped_lines(people_engine, number) != [], "the default's shipment")

        # The default: ship the 5 there are, backorder the 3.
        assert shipped_lines(people_engine, number) == [(1, "pending", D("5"))]
        assert _status(people_engine, number) == "confirmed"
        line = order_line(people_engine, number)
        assert (line.qty_reserved, line.qty_cancelled, line.qty_delivered) == (D("5"), D("0"), D("0"))
        view = await handle.query(QuoteToCash.view)
        whats = [e.what for e in view.timeline]
        assert "backorder choice" not in whats
        late = next(e for e in view.timeline if e.what == "no backorder choice in time")
        accepted_at = next(e for e in view.timeline if e.what == "quote accepted").at
        assert late.at - accepted_at >= timedelta(hours=48)
        assert [e.detail for e in view.timeline if e.what == "backorder"] == ["3 short; waiting for stock"]
        with pytest.raises(WorkflowUpdateFailedError) as err:  # too late to choose now
            await handle.execute_update(QuoteToCash.choose_backorder, BackorderChoiceCommand(REP, "ship_complete"))
        assert err.value.cause.type == "OrderStateInvalid"


async def test_a_shipment_late_for_its_promised_date_is_announced_once(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    number = quote_for(people_engine, world.customer_code, "4")
    client = skipping_env.client
    async with running(skipping_env, people_engine) as queue:
        handle = await accepted(client, queue, people_engine, number, "confirmed")
        with Session(people_engine) as s:
            promised = s.scalars(select(Shipment.promised_date).where(Shipment.number == f"SHP-{number}-1")).one()
        assert promised == utcnow().date() + timedelta(days=1)  # in stock: delivered the next day
        key = f"SHP-{number}-1:delay"
        assert mails_under(people_engine, key) == []

        await skipping_env.sleep(timedelta(hours=25))  # past the start of the promised day, still not shipped
        await until(lambda: len(mails_under(people_engine, key)) == 2, "the delay notice")
        await skipping_env.sleep(timedelta(days=3))
        notices = mails_under(people_engine, key)
        assert {m.message_key: m.recipient for m in notices} == {
            f"{key}:customer": "orders@muster.test", f"{key}:{REP.username}": "sam.sales@tradeflow.test"}
        assert all(m.subject == f"Order {number}: delivery delayed" for m in notices)
        assert all(f"SHP-{number}-1 promised for {promised} has not shipped yet" in m.body for m in notices)

        await ship_all(client, number, 1)
        await until(lambda: _status(people_engine, number) == "delivered", "delivered")
        view = await paid(people_engine, handle, number, world.customer_code, "42.84", "BANK-LATE-SHIP")
        await keep_history(client.get_workflow_handle(shipment_id(number, 1)), "shipment_delay_notice_then_shipped")
    assert view.status == "done"
    assert len(mails_under(people_engine, key)) == 2  # once, however long it was late


async def test_a_credit_hold_nobody_releases_escalates_then_cancels_the_order(skipping_env, people_engine):
    world = build_sales_world_in(people_engine)
    with Session(people_engine) as s, s.begin():
        publish_policy(s, credit_hold_policy())  # controller; to the CFO after 8 h; rejected after 48 h
    # Tight Credit KG: 1,000.00 limit; 100 cables at list are 1,190.00 with VAT.
    number = quote_for(people_engine, world.tight_customer_code, "100")
    client = skipping_env.client
    async with running(skipping_env, people_engine) as queue:
        handle = await client.start_workflow(
            QuoteToCash.run, QuoteToCashInput(number, REP.username, standing_timers=True), id=q2c_id(number),
            task_queue=queue)
        await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
        await sent(handle)
        assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "credit_hold"

        def hold_task() -> HumanTask | None:
            with Session(people_engine) as s:
                return s.scalars(select(HumanTask).where(HumanTask.request_key == f"credit_hold:{number}")).first()

        await until(lambda: hold_task() is not None, "the credit controllers' task")
        assert hold_task().candidate_groups == ["credit-controller"]
        await skipping_env.sleep(timedelta(hours=9))
        await until(lambda: "cfo" in (hold_task().candidate_groups or []), "escalation to the CFO")
        assert _status(people_engine, number) == "credit_hold"
        view = await handle.result()  # time skips to the 48 h expiry: rejected, the order is cancelled
    assert view.status == "cancelled"
    task = hold_task()
    assert (task.status, task.escalation_level) == ("expired", 1)
    with Session(people_engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        lines = list(s.scalars(select(SalesOrderLine).where(SalesOrderLine.order_id == order.id)))
        assert order.status == "cancelled" and order.closed_at is not None
        assert [(ln.qty_reserved, ln.qty_cancelled, ln.qty_delivered) for ln in lines] == [(D("0"), D("100"), D("0"))]
        assert s.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id)).first() is None
