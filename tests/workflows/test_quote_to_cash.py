"""QuoteToCash and Shipment on a real Temporal dev server with the real activities over SQLite.

Each test drives the process as people would (Updates for the rep, approvers, the customer and the warehouse;
signals for payments and stock receipts, written to the database first as finance and the warehouse would) and
ends on the rows: order status, reservations, stock, invoices, and a balanced ledger.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from models.accounting import LineSpec, post_entry
from models.approvals import ApprovalRequest, HumanTask, OutboxMessage
from models.common import utcnow
from models.demo_policies import credit_hold_policy
from models.inventory import MoveRequest, post_move
from models.ledger import JournalLine
from models.orders import QuoteDraft, create_quote, quote_identity, record_payment
from models.sales import CustomerInvoice, NumberSequence, SalesOrder, SalesOrderLine, Shipment
from models.stock import Quant, ReservationDemand
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.sales_world import CABLE, LAMP, SCARCE, SalesWorld, build_sales_world_in
from tests.workflows.histories import keep_history
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.contracts import (
    Actor,
    BackorderChoiceCommand,
    DecideCommand,
    EditQuoteCommand,
    PaymentNotice,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    ResubmitCommand,
    ShipmentStepCommand,
    approval_id,
    q2c_id,
    shipment_id,
)
from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow, quote_facts
from workflows.search_attributes import TRADEFLOW_CURRENT_GROUP, TRADEFLOW_STATUS, new_order_attributes

REP = Actor("sam.sales", ("sales",))
CUSTOMER_ACTOR = Actor("orders@muster.test", ("customer",))
MANAGER = Actor("mia.manager", ("sales-manager",))
CONTROLLER = Actor("carla.credit", ("credit-controller",))
WAREHOUSE = Actor("walter.warehouse", ("warehouse",))
WAIT = 30.0  # a guard against hanging, not a speed assertion


@pytest.fixture
def world(people_engine) -> SalesWorld:
    world = build_sales_world_in(people_engine)
    with Session(people_engine) as s, s.begin():
        # Every test has its own database but all share one dev server, where workflow ids (q2c:Q-000001,
        # shp:..., approval:quote:...) must not meet: each test numbers its quotes from a random start.
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=uuid.uuid4().int % 900_000 + 100_000))
        publish_policy(s, two_step_quote_policy())  # discount above 10 % needs a sales manager
        publish_policy(s, credit_hold_policy())  # every credit hold goes to a credit controller
    return world


# ------------------------------------------------------------------------------------------- helpers


async def start(temporal_env, task_queue, engine, customer: str, lines, **draft) -> WorkflowHandle:
    """What the API does: write the quote row, then start its workflow with its search attributes (so these tests
    run the workflow's lean way, as production does; the timer tests start theirs bare, the way recorded histories
    did)."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        order = create_quote(s, QuoteDraft(customer, tuple(QuoteLineInput(sku, D(q), **kw) for sku, q, kw in lines),
                                           **draft), rep=REP.username, today=utcnow().date())
        total, customer_code, warehouse_code = quote_identity(s, order.number)
    return await temporal_env.client.start_workflow(
        QuoteToCash.run, QuoteToCashInput(order.number, REP.username, standing_timers=True), id=q2c_id(order.number),
        task_queue=task_queue,
        search_attributes=new_order_attributes(amount_total=total, rep=REP.username, customer_code=customer_code,
                                               warehouse_code=warehouse_code),
    )


def number(handle: WorkflowHandle) -> str:
    return handle.id.removeprefix("q2c:")


async def until(handle: WorkflowHandle, check, what: str):
    """Poll the view() query until `check(view)` holds."""
    async with asyncio.timeout(WAIT):
        while True:
            view = await handle.query(QuoteToCash.view)
            if check(view):
                return view
            await asyncio.sleep(0.05)


async def status(handle: WorkflowHandle, wanted: str):
    return await until(handle, lambda v: v.status == wanted, wanted)


async def open_task(client, request_key: str, round_no: int = 1) -> str:
    chain = client.get_workflow_handle(approval_id(request_key))
    async with asyncio.timeout(WAIT):
        while True:
            try:
                open_tasks = (await chain.query(ApprovalChainWorkflow.status)).open_tasks
            except Exception:  # the child is not started yet
                open_tasks = ()
            for task in open_tasks:
                if task.task_key.endswith(f"/round{round_no}"):
                    return task.task_key
            await asyncio.sleep(0.05)


async def ship(client, handle: WorkflowHandle, seq: int) -> None:
    """The warehouse picks, packs and ships shipment `seq` once it exists."""
    shp = shipment_id(number(handle), seq)
    await until(handle, lambda v: f"SHP-{number(handle)}-{seq}" in v.open_shipments, f"shipment {seq}")
    shipment = client.get_workflow_handle_for(ShipmentWorkflow.run, shp)
    for step in ("picked", "packed", "shipped"):
        state = await shipment.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, step))
        assert state.status == step
    assert (await shipment.result()).status == "shipped"


async def pay(engine, client, *, reference: str, customer: str, amount: str) -> list[str]:
    """Finance records the payment, then the workflows it concerns hear of it (what the payments API does)."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        payment, quotes = record_payment(s, reference=reference, customer_code=customer, amount=D(amount),
                                         payment_date=utcnow().date(), recorded_by="fiona.finance")
    for quote in quotes:
        await client.get_workflow_handle(q2c_id(quote)).signal(QuoteToCash.payment_received,
                                       PaymentNotice(reference, payment.customer_id, payment.amount))
    return quotes


async def refused(coro, error_type: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await coro
    assert err.value.cause.type == error_type, err.value.cause
    return str(err.value.cause)


def order_row(engine, quote: str) -> SalesOrder:
    with Session(engine) as s:
        return s.scalars(select(SalesOrder).where(SalesOrder.number == quote)).one()


def lines(engine, quote: str) -> dict[int, SalesOrderLine]:
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == quote)).one()
        return {ln.line_no: ln for ln in s.scalars(select(SalesOrderLine).where(SalesOrderLine.order_id == order.id))}


def invoices(engine, quote: str) -> list[CustomerInvoice]:
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == quote)).one()
        return list(s.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id)
                              .order_by(CustomerInvoice.id)))


def on_hand(engine, world: SalesWorld, sku: str) -> tuple[D, D]:
    """(quantity, reserved) of a product in WH/Stock."""
    with Session(engine) as s:
        q, r = s.execute(select(func.coalesce(func.sum(Quant.quantity), 0), func.coalesce(func.sum(Quant.reserved), 0))
                         .where(Quant.product_id == world.product_id(sku),
                                Quant.location_id == world.stock_location_id)).one()
        return D(q), D(r)


def held(engine, quote: str) -> D:
    """Stock still reserved for the order's demands."""
    with Session(engine) as s:
        return D(s.scalar(select(func.coalesce(func.sum(ReservationDemand.reserved), 0))
                          .where(ReservationDemand.demand_key.startswith(f"{quote}/"))))


def assert_ledger_balances(engine) -> None:
    with Session(engine) as s:
        debit, credit = s.execute(select(func.sum(JournalLine.debit), func.sum(JournalLine.credit))).one()
    assert D(debit) == D(credit) and D(debit) > 0


def receivable(engine, customer_id: int) -> D:
    from models.orders import posted_receivable

    with Session(engine) as s:
        return posted_receivable(s, customer_id)


# --------------------------------------------------------------------------------------------- tests


async def test_straight_through_to_done(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Contractor prices: cable 9.00 (10 % off list, not above the approval threshold), lamp 50.00 below 10 pieces.
    handle = await start(temporal_env, worker, engine, world.customer_code, [(CABLE, "20", {}), (LAMP, "2", {})])
    quote = number(handle)
    await status(handle, "draft")

    assert await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP)) in ("pending_approval", "sent")
    await status(handle, "sent")  # no rule matched: the chain approves at once
    await refused(handle.execute_update(QuoteToCash.edit_quote, EditQuoteCommand(REP, valid_until=date(2031, 1, 1))),
                  "OrderStateInvalid")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"

    # The lamps are invoiced on ordered quantities at confirmation; the cables once delivered.
    first = invoices(engine, quote)
    assert [(i.amount_untaxed, i.amount_total) for i in first] == [(D("100.00"), D("119.00"))]
    assert held(engine, quote) == D("22")

    shp = client.get_workflow_handle(shipment_id(quote, 1))
    await until(handle, lambda v: v.open_shipments == (f"SHP-{quote}-1",), "shipment 1")
    await refused(shp.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(REP, "picked")), "NotAllowed")
    await refused(shp.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, "shipped")),
                  "OrderStateInvalid")
    await refused(shp.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, "picked", ("LAMP-200",))),
                  "ScanMismatch")
    for step in ("picked", "packed"):
        assert (await shp.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, step))).status == step
    # Operators read the step in the shipment's current details; its TradeflowStatus stays pending until it ships.
    details = await shp.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert details.current_details.startswith(f"**SHP-{quote}-1** of {quote}: packed")
    assert (await shp.describe()).typed_search_attributes.get(TRADEFLOW_STATUS) == "pending"
    assert (await shp.execute_update(ShipmentWorkflow.step, ShipmentStepCommand(WAREHOUSE, "shipped"))).status == \
        "shipped"
    assert (await shp.result())["status"] == "shipped"
    await status(handle, "delivered")

    both = invoices(engine, quote)
    assert [i.amount_total for i in both] == [D("119.00"), D("214.20")]  # 20 × 9.00 + 19 % VAT
    assert receivable(engine, world.customer_id) == D("333.20")
    signalled = await pay(engine, client, reference="BANK-0001", customer=world.customer_code,
                          amount="333.20")
    assert signalled == [quote]
    view = await handle.result()
    # q2c_straight_through_done.json is the same order before the folded steps (q2c-folded-steps); kept, not
    # re-recorded, so orders that were running then still replay.
    await keep_history(handle, "q2c_straight_through_done_v2_standing")
    await keep_history(shp, "shipment_picked_packed_shipped_quiet")

    # The folded order phase: acceptance, confirmation and each settlement are one activity (one transaction) each.
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 async for e in handle.fetch_history_events()
                 if e.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled == ["load_quote", "set_order_status", "set_order_status", "accept_order", "confirm_order",
                         "create_shipment", "settle_order", "settle_order"]

    assert view.status == "done" and view.open_shipments == ()
    whats = [e.what for e in view.timeline]
    assert whats[:4] == ["quote created", "submitted for approval", "quote approved and sent", "quote accepted"]
    assert whats[-3:] == ["order delivered", "payment received", "order done"]
    order = order_row(engine, quote)
    assert (order.status, order.accepted_by, order.amount_invoiced, order.amount_paid) == (
        "done", CUSTOMER_ACTOR.username, D("333.20"), D("333.20"))
    assert {ln.line_no: (ln.qty_delivered, ln.qty_invoiced) for ln in lines(engine, quote).values()} == {
        1: (D("20"), D("20")), 2: (D("2"), D("2"))}
    assert [i.status for i in invoices(engine, quote)] == ["paid", "paid"]
    assert on_hand(engine, world, CABLE) == (D("80"), D("0")) and on_hand(engine, world, LAMP) == (D("18"), D("0"))
    assert held(engine, quote) == 0 and receivable(engine, world.customer_id) == 0
    assert_ledger_balances(engine)
    with Session(engine) as s:
        subjects = set(s.scalars(select(OutboxMessage.subject).where(OutboxMessage.message_key.startswith(quote))))
        assert f"Order {quote} confirmed" in subjects

    # Operators find it done and waiting for nobody; it got there with one upsert per wait, none at the start and
    # no TemporalChangeVersion (a lean run asks no patch): draft was given at start, then pending_approval, sent,
    # confirmed, delivered, done. Its shipment: one, when shipped (group cleared with it); picked and packed were in
    # its current details only (ShipmentInput.quiet_steps).
    described = await handle.describe()
    assert described.typed_search_attributes.get(TRADEFLOW_STATUS) == "done"
    assert described.typed_search_attributes.get(TRADEFLOW_CURRENT_GROUP) is None
    assert [u["TradeflowStatus"] for u in await upserts(handle) if "TradeflowStatus" in u] == [
        "pending_approval", "sent", "confirmed", "delivered", "done"]
    assert await upserts(shp) == [{"TradeflowStatus": "shipped", "TradeflowCurrentGroup": None}]


async def upserts(handle: WorkflowHandle) -> list[dict[str, str]]:
    """The search-attribute upserts in a workflow's history, as {name: value} (None: unset)."""
    from temporalio.api.enums.v1 import EventType

    return [{name: json.loads(payload.data) if payload.data else None for name, payload
             in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields.items()}
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]


async def test_discount_approval_with_changes_then_acceptance(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # 12 % on top of the contractor price (9.00, itself 10 % off list): the policy routes on the rep's concession,
    # 12 % — above the sales manager's 10 %, below the CFO's 20 % (against list it would be 20.8 %: the CFO too).
    handle = await start(temporal_env, worker, engine, world.customer_code,
                         [(CABLE, "50", {"discount_percent": D("12")})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP, "big project"))
    await status(handle, "pending_approval")
    task = await open_task(client, f"quote:{quote}")
    chain = client.get_workflow_handle(approval_id(f"quote:{quote}"))
    await chain.execute_update(ApprovalChainWorkflow.decide,
                               DecideCommand(task, MANAGER, "changes_requested", "at most 5 % on top"))
    view = await status(handle, "changes_requested")
    assert view.approval_workflow_id == approval_id(f"quote:{quote}")
    assert order_row(engine, quote).status == "changes_requested"

    # The rep edits through the workflow, then resubmits into the same chain with the new facts (the API's job).
    edited = await handle.execute_update(QuoteToCash.edit_quote, EditQuoteCommand(
        REP, lines=(QuoteLineInput(CABLE, D("50"), discount_percent=D("5")),), expected_version=view.version))
    assert edited.version == view.version + 1 and edited.amount_untaxed == D("427.50")  # 50 × 9.00 × 0.95
    await refused(handle.execute_update(QuoteToCash.edit_quote, EditQuoteCommand(
        REP, valid_until=date(2031, 1, 1), expected_version=view.version)), "StaleVersion")
    await chain.execute_update(ApprovalChainWorkflow.resubmit,
                               ResubmitCommand(REP, "5 % now", quote_facts(edited, REP.username)))
    await status(handle, "pending_approval")
    again = await open_task(client, f"quote:{quote}", round_no=2)
    await chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(again, Actor("max.manager",
                                                                                        ("sales-manager",)),
                                                                           "approved", "fine"))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "confirmed"
    await refused(handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)), "OrderStateInvalid")

    view = await handle.query(QuoteToCash.view)
    assert [e.what for e in view.timeline][:7] == [
        "quote created", "submitted for approval", "changes requested", "quote edited (version 2)",
        "resubmitted for approval", "quote approved and sent", "quote accepted"]
    order = order_row(engine, quote)
    assert (order.status, order.version, order.amount_untaxed, order.accepted_by) == (
        "confirmed", 2, D("427.50"), REP.username)
    with Session(engine) as s:
        request = s.scalars(select(ApprovalRequest).where(ApprovalRequest.request_key == f"quote:{quote}")).one()
        # The resubmitted facts carry the concession after the edit: 5 % off the contractor price.
        assert edited.concession_percent == D("5.000") and edited.discount_percent == D("14.500")
        assert request.status == "approved" and request.facts["discount_percent"] == "5.000"
        assert request.title == f"Quote {quote} for Elektro Muster GmbH (C-1000)"  # a name people recognise
        assert list(s.scalars(select(HumanTask.outcome).where(HumanTask.request_key == f"quote:{quote}")
                              .order_by(HumanTask.id))) == ["changes_requested", "approved"]
    assert held(engine, quote) == D("50") and on_hand(engine, world, CABLE) == (D("100"), D("50"))
    assert invoices(engine, quote) == []  # cables are invoiced on delivery
    assert_ledger_balances(engine)


async def test_credit_hold_released_by_a_controller(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Tight Credit KG has a 1,000.00 limit; 100 cables at list are 1,190.00 with VAT.
    handle = await start(temporal_env, worker, engine, world.tight_customer_code, [(CABLE, "100", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "credit_hold"
    view = await handle.query(QuoteToCash.view)
    assert view.credit_workflow_id == approval_id(f"credit_hold:{quote}")
    assert held(engine, quote) == 0  # nothing is reserved for an order on hold

    task = await open_task(client, f"credit_hold:{quote}")
    chain = client.get_workflow_handle_for(ApprovalChainWorkflow.run, approval_id(f"credit_hold:{quote}"))
    await refused(chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(task, REP, "approved")),
                  "NotAllowed")
    await chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(task, CONTROLLER, "approved", "good payer"))
    await status(handle, "confirmed")

    assert (await chain.result()).outcome == "approved"
    order = order_row(engine, quote)
    assert (order.status, order.accepted_by) == ("confirmed", CUSTOMER_ACTOR.username)
    assert held(engine, quote) == D("100") and on_hand(engine, world, CABLE) == (D("100"), D("100"))
    assert invoices(engine, quote) == []
    with Session(engine) as s:
        assert s.scalars(select(HumanTask.completed_by).where(HumanTask.task_key == task)).one() == "carla.credit"
        assert s.scalars(select(OutboxMessage.subject).where(OutboxMessage.message_key == f"{quote}:hold:customer")
                         ).one() == f"Order {quote} is on credit hold"
    assert_ledger_balances(engine)


async def test_credit_hold_released_by_a_payment(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Elektro Muster already owes 4,500.00 of a 5,000.00 limit; this order (1,071.00) takes it over.
    with Session(engine) as s, s.begin():
        post_entry(s, source_key="opening:C-1000", entry_date=utcnow().date(), memo="opening balance", lines=[
            LineSpec("1100", debit=D("4500.00"), customer_id=world.customer_id),
            LineSpec("3900", credit=D("4500.00")),
        ])
    handle = await start(temporal_env, worker, engine, world.customer_code, [(CABLE, "100", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "credit_hold"
    task = await open_task(client, f"credit_hold:{quote}")

    # A payment that still leaves it over the limit changes nothing; the second one brings it under.
    assert await pay(engine, client, reference="BANK-0100", customer=world.customer_code,
                     amount="100.00") == [quote]
    assert await pay(engine, client, reference="BANK-0101", customer=world.customer_code,
                     amount="1000.00") == [quote]
    await status(handle, "confirmed")

    chain = client.get_workflow_handle_for(ApprovalChainWorkflow.run, approval_id(f"credit_hold:{quote}"))
    assert (await chain.result()).outcome == "cancelled"
    # The second payment may reach the workflow before or after the release: either way it is recorded once.
    view = await until(handle, lambda v: [e.what for e in v.timeline].count("payment received") == 2, "payments")
    released = [e for e in view.timeline if e.what == "credit hold released"]
    assert len(released) == 1 and "within the limit 5000.00" in released[0].detail
    assert order_row(engine, quote).status == "confirmed"
    assert receivable(engine, world.customer_id) == D("3400.00")
    with Session(engine) as s:
        assert s.scalars(select(HumanTask.status).where(HumanTask.task_key == task)).one() == "cancelled"
        assert s.scalars(select(ApprovalRequest.status)
                         .where(ApprovalRequest.request_key == f"credit_hold:{quote}")).one() == "cancelled"
    assert held(engine, quote) == D("100") and on_hand(engine, world, CABLE) == (D("100"), D("100"))
    assert_ledger_balances(engine)


async def test_partial_shipment_backorder_then_completion(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # Cash & Carry asks to be asked about backorders; 8 scarce items, 5 on hand, list price 100.00.
    handle = await start(temporal_env, worker, engine, world.cash_customer_code, [(SCARCE, "8", {})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "awaiting_customer"
    await refused(handle.execute_update(QuoteToCash.choose_backorder, BackorderChoiceCommand(REP, "later")),
                  "OrderInputInvalid")
    assert await handle.execute_update(QuoteToCash.choose_backorder,
                                       BackorderChoiceCommand(CUSTOMER_ACTOR, "ship_available")) == "confirmed"

    await ship(client, handle, 1)
    await until(handle, lambda v: any(e.what == "invoiced" for e in v.timeline), "first invoice")
    line = lines(engine, quote)[1]
    assert (line.qty_delivered, line.qty_invoiced) == (D("5"), D("5"))
    assert order_row(engine, quote).status == "confirmed"  # 3 still on backorder

    # Three arrive from the supplier; the warehouse's receipt tells the order.
    with Session(engine) as s, s.begin():
        post_move(s, MoveRequest(key="test:receipt:SCARCE:2", product_id=world.product_id(SCARCE), quantity=D("3"),
                                 source_location_id=world.supplier_location_id,
                                 dest_location_id=world.stock_location_id, unit_cost=D("60.00")))
    await handle.signal(QuoteToCash.stock_arrived)
    await ship(client, handle, 2)
    await status(handle, "delivered")
    assert [i.amount_total for i in invoices(engine, quote)] == [D("595.00"), D("357.00")]

    await pay(engine, client, reference="BANK-0200", customer=world.cash_customer_code,
              amount="952.00")
    view = await handle.result()
    await keep_history(handle, "q2c_backorder_completed_standing")

    assert view.status == "done"
    whats = [e.what for e in view.timeline]
    assert whats.index("shipment 1 shipped") < whats.index("shipment 2 created") < whats.index("shipment 2 shipped")
    assert "backorder choice" in whats
    with Session(engine) as s:
        assert list(s.scalars(select(Shipment.status).where(Shipment.number.startswith(f"SHP-{quote}-"))
                              .order_by(Shipment.seq))) == ["shipped", "shipped"]
    line = lines(engine, quote)[1]
    assert (line.qty_delivered, line.qty_invoiced, line.qty_cancelled) == (D("8"), D("8"), D("0"))
    assert [i.status for i in invoices(engine, quote)] == ["paid", "paid"]
    assert on_hand(engine, world, SCARCE) == (D("0"), D("0")) and held(engine, quote) == 0
    assert receivable(engine, world.cash_customer_id) == 0
    assert_ledger_balances(engine)


async def test_cancel_after_partial_shipment_compensates(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    # 25 lamps (20 on hand, invoiced on ordered quantities) and 4 cables; ship what is there, backorder the rest.
    handle = await start(temporal_env, worker, engine, world.cash_customer_code,
                         [(LAMP, "25", {}), (CABLE, "4", {})], backorder_preference="ship_available")
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "confirmed"
    assert [i.amount_total for i in invoices(engine, quote)] == [D("1487.50")]  # 25 × 50.00 + 19 %
    await ship(client, handle, 1)
    await until(handle, lambda v: [e.what for e in v.timeline].count("invoiced") == 2, "second invoice")

    assert await handle.execute_update(QuoteToCash.cancel, QuoteCommand(REP, "customer found another supplier")) \
        == "cancelled"
    view = await handle.result()
    await keep_history(handle, "q2c_cancelled_after_partial_shipment_standing")

    cancelled = [e for e in view.timeline if e.what == "order cancelled"]
    assert len(cancelled) == 1
    assert "backorders cancelled 5" in cancelled[0].detail and "24 shipped may be returned" in cancelled[0].detail
    order = order_row(engine, quote)
    assert (order.status, order.cancel_reason) == ("cancelled", "customer found another supplier")
    lamp, cable = lines(engine, quote)[1], lines(engine, quote)[2]
    assert (lamp.qty_delivered, lamp.qty_cancelled, lamp.qty_invoiced) == (D("20"), D("5"), D("20"))
    assert (cable.qty_delivered, cable.qty_invoiced) == (D("4"), D("4"))
    docs = invoices(engine, quote)
    assert [(d.kind, d.amount_total) for d in docs] == [
        ("invoice", D("1487.50")), ("invoice", D("47.60")), ("credit_note", D("297.50"))]
    # The credit note is offset against the lamp invoice: the customer owes what was delivered.
    assert docs[0].amount_residual == D("1190.00") and docs[2].amount_residual == 0
    assert receivable(engine, world.cash_customer_id) == D("1237.60")
    assert on_hand(engine, world, LAMP) == (D("0"), D("0")) and on_hand(engine, world, CABLE) == (D("96"), D("0"))
    assert held(engine, quote) == 0
    assert_ledger_balances(engine)


async def test_accept_as_soon_as_the_row_says_sent_is_not_refused(temporal_env, worker, people_engine, world):
    # The rep's page reads the row, which says "sent" a moment before the workflow's own status does: accepting
    # right then (as a person reloading, or a channel polling, can) must work.
    engine, client = people_engine, temporal_env.client
    handle = await start(temporal_env, worker, engine, world.customer_code,
                         [(CABLE, "50", {"discount_percent": D("12")})])
    quote = number(handle)
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(REP, "big project"))
    task = await open_task(client, f"quote:{quote}")
    chain = client.get_workflow_handle(approval_id(f"quote:{quote}"))
    await chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(task, MANAGER, "approved", "ok"))
    async with asyncio.timeout(WAIT):
        while order_row(engine, quote).status != "sent":
            await asyncio.sleep(0.002)
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(REP)) == "confirmed"
    assert order_row(engine, quote).status == "confirmed"
    await handle.execute_update(QuoteToCash.cancel, QuoteCommand(REP, "test over"))
