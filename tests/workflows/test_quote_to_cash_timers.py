"""QuoteToCash's durable timers on the time-skipping test server: a quote expires at the end of its validity date,
and an unpaid invoice gets reminders at the dunning dates, then goes to collections."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session
from temporalio.worker import Worker

from activities import build_activities
from models.approvals import OutboxMessage
from models.common import utcnow
from models.orders import QuoteDraft, create_quote, record_payment
from models.sales import CustomerInvoice, NumberSequence, SalesOrder
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.sales_world import CABLE, build_sales_world_in
from tests.workflows.test_approval_chain_timers import skipping_env  # noqa: F401  (the fixture)
from workflows.contracts import (
    Actor,
    PaymentNotice,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    ShipmentStepCommand,
    q2c_id,
    shipment_id,
)
from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow
from workflows.registry import ALL_WORKFLOWS

REP = Actor("sam.sales", ("sales",))
WAREHOUSE = Actor("walter.warehouse", ("warehouse",))


@asynccontextmanager
async def running(env, engine):
    queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(env.client, task_queue=queue, workflows=ALL_WORKFLOWS,
                          activities=build_activities(engine), activity_executor=pool):
            yield queue


def quote_for(engine, customer: str, quantity: str, **draft) -> str:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=uuid.uuid4().int % 900_000 + 100_000))
        s.flush()
        publish_policy(s, two_step_quote_policy())
        return create_quote(s, QuoteDraft(customer, (QuoteLineInput(CABLE, D(quantity)),), **draft),
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
            QuoteToCash.run, QuoteToCashInput(number, REP.username), id=q2c_id(number), task_queue=queue)
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
            QuoteToCash.run, QuoteToCashInput(number, REP.username), id=q2c_id(number), task_queue=queue)
        await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
        await until(lambda: _status(people_engine, number) == "sent", "sent")
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

        with Session(people_engine, expire_on_commit=False) as s, s.begin():
            payment, quotes = record_payment(s, reference="BANK-LATE", customer_code=world.cash_customer_code,
                                             amount=D("47.60"), payment_date=utcnow().date(),
                                             recorded_by="fiona.finance")
        assert quotes == [number]
        await handle.signal(QuoteToCash.payment_received, PaymentNotice("BANK-LATE", payment.customer_id,
                                                                        payment.amount))
        view = await handle.result()
    assert view.status == "done"
    whats = [e.what for e in view.timeline]
    assert whats[-6:] == ["payment reminder 1", "payment reminder 2", "payment reminder 3", "handed to collections",
                          "payment received", "order done"]
    with Session(people_engine) as s:
        assert s.scalars(select(CustomerInvoice.status)).one() == "paid"
    assert _status(people_engine, number) == "done"


def _status(engine, number: str) -> str:
    with Session(engine) as s:
        return s.scalars(select(SalesOrder.status).where(SalesOrder.number == number)).one()
