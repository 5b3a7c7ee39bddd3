"""Drives straight-through orders end to end through a Temporal client, as the API and people would, and keeps
going while the worker dies and comes back. Used by tests/workflows/test_quote_to_cash_faults.py (the worker is
SIGKILLed under it) and bench/quote_to_cash.py (no faults: the same path, timed).

One order: the rep's quote row (models.orders.create_quote), QuoteToCash started, `submit`, wait for "sent" (no
approval rule matches), the customer's `accept`, the warehouse's picked / packed / shipped through the Shipment
workflow's `step` Update, wait for "delivered", finance records one payment per invoice (models.orders.
record_payment, naming the invoice so the money lands on this order) and signals `payment_received`, then the
workflow's result.

How a caller survives a worker that is gone:

- Timeouts and "unavailable" are retryable: every call carries a short rpc_timeout (an Update sent while no worker
  runs would otherwise wait for one indefinitely) and is sent again after a pause.
- A retried Update gets a fresh update id, as a person clicking again would. If an earlier attempt did take effect
  before its answer was lost, the retry is refused by the workflow ("quote ... is already accepted", "cannot
  submit: quote ... is pending_approval"). Such a refusal, after an attempt whose fate is unknown, is not trusted on
  its word: the driver reads the workflow's state (the view query) and counts it as success only once the state
  shows the earlier attempt's effect (`reached`); a refusal with no earlier unknown attempt is a real failure.
- "Another step is being recorded; try again" (StaleVersion) means an earlier attempt is still running: wait, retry.
- A Shipment step repeated after it took effect is answered with the current state (the workflow treats a repeat as
  a no-op), so there the retry itself is the recognition; after "shipped" the Shipment workflow may have ended
  before the retry ("workflow execution already completed"): its result, status shipped, is the recognition.
- A query while the workflow's last task died with the worker is refused as "not ready": retried.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.sales import ORDER_STATE_INVALID, STALE_VERSION
from models.common import utcnow
from models.demo_policies import credit_hold_policy
from models.inventory import MoveRequest, post_move
from models.masterdata import Customer
from models.orders import QuoteDraft, create_quote, quote_identity, record_payment
from models.sales import CustomerInvoice, NumberSequence, SalesOrder
from tests.approval_world import add_people, publish_policy, two_step_quote_policy
from tests.sales_world import CABLE, LAMP, SalesWorld, build_sales_world_in
from workflows.contracts import (
    Actor,
    OrderStatus,
    OrderView,
    PaymentNotice,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    ShipmentState,
    ShipmentStepCommand,
    approval_id,
    q2c_id,
    shipment_id,
)
from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow
from workflows.search_attributes import new_order_attributes

REP = Actor("sam.sales", ("sales",))
CUSTOMER_ACTOR = Actor("orders@muster.test", ("customer",))
WAREHOUSE = Actor("walter.warehouse", ("warehouse",))
FINANCE = "fiona.finance"

# Short enough that a call into a dead worker comes back soon to be retried; long enough for a loaded machine.
RPC_TIMEOUT = timedelta(seconds=5)
RETRY_PAUSE = 0.5
FIRST_POLL_SECONDS = 0.01  # row_until's first pause; it doubles up to the driver's poll interval
RETRYABLE_RPC = frozenset({RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.CANCELLED,
                           RPCStatusCode.ABORTED, RPCStatusCode.RESOURCE_EXHAUSTED})
AFTER_ACCEPT = frozenset({OrderStatus.confirmed, OrderStatus.delivered, OrderStatus.done})


PRICE = {CABLE: Decimal("9.00"), LAMP: Decimal("50.00")}  # contractor prices of the sales world (tests/sales_world.py)
COST = {CABLE: Decimal("6.00"), LAMP: Decimal("30.00")}  # FIFO, one cost per product in this world


def straight_through_world(engine: Engine, received: dict[str, Decimal]) -> SalesWorld:
    """The sales world (committed) made for straight-through orders of C-1000: approval and credit-hold policies
    published, `received` extra units of each sku on the shelf at its cost, and a credit limit that many orders in
    flight at once cannot reach (these orders are about the process, not credit holds)."""
    with Session(engine) as s, s.begin():
        add_people(s)
    world = build_sales_world_in(engine)
    with Session(engine) as s, s.begin():
        # Tests share one dev server, where workflow ids must not meet: quotes are numbered from a random start.
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=uuid.uuid4().int % 900_000 + 100_000))
        publish_policy(s, two_step_quote_policy())  # no order here goes above its 10 % discount: no approval
        publish_policy(s, credit_hold_policy())
        customer = s.scalars(select(Customer).where(Customer.code == world.customer_code)).one()
        customer.credit_limit = Decimal("10000000.00")
        s.add(customer)
        for sku, quantity in received.items():
            post_move(s, MoveRequest(key=f"straight-through:receipt:{sku}", product_id=world.product_id(sku),
                                     quantity=quantity, source_location_id=world.supplier_location_id,
                                     dest_location_id=world.stock_location_id, unit_cost=COST[sku]))
    return world


def plan_order(rng: random.Random) -> tuple[OrderLine, ...]:
    """1–4 cables (invoiced on delivery), and in two orders of three 1–2 lamps (invoiced at confirmation)."""
    lines = [OrderLine(CABLE, Decimal(rng.randint(1, 4)))]
    if rng.random() < 2 / 3:
        lines.append(OrderLine(LAMP, Decimal(rng.randint(1, 2))))
    return tuple(lines)


class OrderStuck(AssertionError):
    """An order did not reach the state it should have within the driver's patience."""


@dataclass
class DriverStats:
    """What the faults did to the callers (reported by the fault test, and proof that the faults hit something)."""

    retried: Counter = field(default_factory=Counter)  # "accept: WorkflowUpdateRPCTimeoutOrCancelledError" -> n
    recognised: list[str] = field(default_factory=list)  # refusals recognised as an earlier attempt's success
    try_again: int = 0  # StaleVersion answers: an earlier attempt still running


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: Decimal


@dataclass(frozen=True)
class OrderRun:
    number: str
    view: OrderView
    seconds: float  # quote created -> order done, as the driver saw it
    payments: tuple[str, ...]  # bank references


def _retryable(err: BaseException) -> bool:
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return True
    if not isinstance(err, RPCError):
        return False
    # A query while the workflow's last task timed out with its dead worker: "Unable to query workflow due to
    # Workflow Task in failed state" until the next worker has run it again.
    return err.status in RETRYABLE_RPC or _detail(err).endswith("WorkflowNotReadyFailure")


def _detail(err: RPCError) -> str:
    details = err.grpc_status.details
    return details[0].type_url if details else ""


def _completed(err: BaseException) -> bool:
    """The Update's workflow has closed: NOT_FOUND "workflow execution already completed", or "workflow update was
    aborted by closing workflow" (the retry was admitted just as the earlier attempt's effect closed the workflow)."""
    return (isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND
            and ("completed" in err.message or "closing workflow" in err.message))


class OrderDriver:
    def __init__(self, client: Client, task_queue: str, engine: Engine, customer_code: str, *,
                 poll_seconds: float = 0.2, patience_seconds: float = 300.0,
                 stats: DriverStats | None = None) -> None:
        self.client = client
        self.task_queue = task_queue
        self.engine = engine
        self.customer_code = customer_code
        self.poll = poll_seconds
        self._status_connection = None  # opened by the first row poll (_row_status)
        self._status_sql = ""
        self.patience = patience_seconds
        self.stats = stats or DriverStats()

    # ------------------------------------------------------------------------------------------ one order

    async def run_order(self, lines: tuple[OrderLine, ...]) -> OrderRun:
        started = time.perf_counter()
        number, attributes = await asyncio.to_thread(self._create_quote, lines)
        handle = await self._start(number, attributes)

        await self._update(handle, "submit", QuoteToCash.submit, QuoteCommand(REP),
                           reached=lambda v: v.status != OrderStatus.draft)
        # The approval chain routes the quote (no rule matches here). Its end is awaited as a long poll on the
        # server, not by reading the row ten times a second (a person does not look that often either); then the
        # row, as the rep's page does (the workflow takes an accept the moment the row says sent). Polling the
        # view query would charge the server and the worker for a reader a real order never has.
        await self._ended(self.client.get_workflow_handle(approval_id(f"quote:{number}")), "approval")
        await self.row_until(number, {OrderStatus.sent}, "sent")
        shipment_number = f"SHP-{number}-1"

        def shipping(v: OrderView) -> bool:
            return shipment_number in v.open_shipments or v.status in (OrderStatus.delivered, OrderStatus.done)

        # accept answers "confirmed" once the reservation pass has started the first shipment (all is in stock
        # here): no query needed then. A retry recognised from the view waits for the shipment itself.
        accepted = await self._update(handle, "accept", QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR),
                                      reached=lambda v: v.status in AFTER_ACCEPT and shipping(v))
        if accepted != OrderStatus.confirmed:
            await self.until(handle, shipping, "shipment 1 open")
        shipment = self.client.get_workflow_handle_for(ShipmentWorkflow.run, shipment_id(number, 1))
        for step in ("picked", "packed", "shipped"):
            state: ShipmentState = await self._update(shipment, f"step {step}", ShipmentWorkflow.step,
                                                      ShipmentStepCommand(WAREHOUSE, step),
                                                      closed=lambda: self._shipped(shipment))
            assert state.status in ("picked", "packed", "shipped"), state

        await self._ended(shipment, "shipment")  # the parent records the delivery once its shipment has ended
        await self.row_until(number, {OrderStatus.delivered, OrderStatus.done}, "delivered")
        payments = await asyncio.to_thread(self._pay_invoices, number)
        for reference, customer_id, amount in payments:
            await self._retrying(f"signal {reference}", lambda r=reference, c=customer_id, a=amount: handle.signal(
                QuoteToCash.payment_received, PaymentNotice(r, c, a), rpc_timeout=RPC_TIMEOUT))
        view = await self._result(handle)
        return OrderRun(number, view, time.perf_counter() - started, tuple(p[0] for p in payments))

    # ------------------------------------------------------------------------------------------ database

    def _create_quote(self, lines: tuple[OrderLine, ...]) -> tuple[str, TypedSearchAttributes]:
        """The quote's number, and the search attributes its process starts with (as the API gives them)."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            order = create_quote(s, QuoteDraft(self.customer_code, tuple(QuoteLineInput(ln.sku, ln.quantity)
                                                                        for ln in lines)),
                                 rep=REP.username, today=utcnow().date())
            total, customer_code, warehouse_code = quote_identity(s, order.number)
            return order.number, new_order_attributes(amount_total=total, rep=REP.username,
                                                      customer_code=customer_code, warehouse_code=warehouse_code)

    def _pay_invoices(self, number: str) -> list[tuple[str, int, Decimal]]:
        """One payment per invoice of the order, naming it (an unnamed payment would settle the customer's oldest
        open invoice, another order's). Idempotent by bank reference: a repeat returns the first payment."""
        paid = []
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
            invoices = s.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id,
                                                               CustomerInvoice.kind == "invoice")
                                 .order_by(CustomerInvoice.id)).all()
            for invoice in invoices:
                payment, _ = record_payment(s, reference=f"PAY-{invoice.number}", customer_code=self.customer_code,
                                            amount=invoice.amount_total, payment_date=utcnow().date(),
                                            recorded_by=FINANCE, invoice_number=invoice.number)
                paid.append((payment.reference, payment.customer_id, payment.amount))
        return paid

    # ------------------------------------------------------------------------------------------ Temporal

    async def _start(self, number: str, attributes: TypedSearchAttributes) -> WorkflowHandle:
        attempted = False
        while True:
            try:
                return await self.client.start_workflow(
                    QuoteToCash.run, QuoteToCashInput(number, REP.username, standing_timers=True), id=q2c_id(number),
                    task_queue=self.task_queue, rpc_timeout=RPC_TIMEOUT, search_attributes=attributes)
            except WorkflowAlreadyStartedError:
                if not attempted:
                    raise
                # The earlier attempt started it and its answer was lost (ids are business keys: no second run).
                self.stats.recognised.append(f"{number} start: already started")
                return self.client.get_workflow_handle_for(QuoteToCash.run, q2c_id(number))
            except Exception as err:
                if not _retryable(err):
                    raise
                attempted = True
                self.stats.retried[f"start: {type(err).__name__}"] += 1
                await asyncio.sleep(RETRY_PAUSE)

    async def _ended(self, handle: WorkflowHandle, what: str) -> None:
        """Until the workflow has closed, however it ended (the row polls after this say what came of it); one
        that is not started yet is waited for."""
        async with asyncio.timeout(self.patience):
            while True:
                try:
                    await self._retry(what, lambda: handle.result(rpc_timeout=RPC_TIMEOUT))
                    return
                except WorkflowFailureError:
                    return
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    await asyncio.sleep(self.poll)

    async def _shipped(self, shipment: WorkflowHandle) -> ShipmentState | None:
        """The shipment's final state, if its workflow ended shipped."""
        result = await self._retrying("result", lambda: shipment.result(rpc_timeout=RPC_TIMEOUT))
        return result if result.status == "shipped" else None

    async def _update(self, handle: WorkflowHandle, what: str, update, arg,
                      reached: Callable[[OrderView], bool] | None = None,
                      closed: Callable[[], Awaitable[Any]] | None = None):
        """Send an Update until it succeeds; see the module docstring for what counts as success. `closed` says
        what a workflow that has ended meanwhile means for this Update (None: the Update did not succeed)."""
        unknown = False  # an earlier attempt may have taken effect
        async with asyncio.timeout(self.patience):
            while True:
                try:
                    return await handle.execute_update(update, arg, id=f"{what}-{uuid.uuid4()}",
                                                       rpc_timeout=RPC_TIMEOUT)
                except WorkflowUpdateFailedError as err:
                    cause = err.cause
                    kind = cause.type if isinstance(cause, ApplicationError) else None
                    if kind == STALE_VERSION:
                        self.stats.try_again += 1
                        await asyncio.sleep(RETRY_PAUSE)
                        continue
                    if unknown and kind == ORDER_STATE_INVALID and reached is not None:
                        # Trust the state, not the refusal: wait until it shows the earlier attempt's effect.
                        view = await self.until(handle, reached, f"{what} (recognised)")
                        self.stats.recognised.append(f"{handle.id} {what}: {cause.message} -> {view.status}")
                        return view.status
                    raise
                except Exception as err:
                    if unknown and closed is not None and _completed(err):
                        # e.g. "shipped" took effect, the shipment workflow ended, and the answer was lost.
                        outcome = await closed()
                        if outcome is None:
                            raise
                        self.stats.recognised.append(f"{handle.id} {what}: workflow already completed")
                        return outcome
                    if not _retryable(err):
                        raise
                    unknown = True
                    self.stats.retried[f"{what.split()[0]}: {type(err).__name__}"] += 1
                    await asyncio.sleep(RETRY_PAUSE)

    async def _retrying(self, what: str, call):
        async with asyncio.timeout(self.patience):
            return await self._retry(what, call)

    async def _retry(self, what: str, call):
        while True:
            try:
                return await call()
            except Exception as err:
                if not _retryable(err):
                    raise
                self.stats.retried[f"{what.split()[0]}: {type(err).__name__}"] += 1
                await asyncio.sleep(RETRY_PAUSE)

    async def view(self, handle: WorkflowHandle) -> OrderView:
        return await self._retrying("query", lambda: handle.query(QuoteToCash.view, rpc_timeout=RPC_TIMEOUT))

    async def until(self, handle: WorkflowHandle, check: Callable[[OrderView], bool], what: str) -> OrderView:
        """Poll the view query until `check` holds (a guard against hanging, not a speed assertion)."""
        deadline = time.monotonic() + self.patience
        while True:
            view = await self.view(handle)
            if check(view):
                return view
            if time.monotonic() > deadline:
                raise OrderStuck(f"{handle.id} never reached {what}: {view.status}, waiting for {view.waiting_for}")
            await asyncio.sleep(self.poll)

    def _row_status(self, number: str) -> str | None:
        """The order row's status: one SELECT on a database connection the driver keeps for it.

        The driver polls only to learn when the order is ready for its next step (a person would simply look
        later), so the poll is kept lean: no Session, no pool checkout, no explicit transaction. A session per poll
        cost more of the driver's CPU than everything else it does for an order but the quote and the payments
        (cProfile of bench/quote_to_cash.py, 2026-11-28). It never waits for or holds up the workers' writes: on
        SQLite the connection is in autocommit (models.db) and each SELECT reads its own WAL snapshot; on
        PostgreSQL the read is rolled back at once, so no transaction stays open."""
        if self._status_connection is None:
            self._status_connection = self.engine.raw_connection()
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            self._status_sql = f"SELECT status FROM sales_order WHERE number = {mark}"
        connection = self._status_connection
        cursor = connection.cursor()
        try:
            cursor.execute(self._status_sql, (number,))
            row = cursor.fetchone()
        finally:
            cursor.close()
            connection.rollback()
        return row[0] if row else None

    def close(self) -> None:
        """Give back the connection the status polls keep."""
        if self._status_connection is not None:
            self._status_connection.close()
            self._status_connection = None

    async def row_until(self, number: str, statuses: set[str], what: str) -> str:
        """Poll the order row until its status is one of `statuses` (a guard against hanging, not a speed
        assertion). The row is written by the activity that also moves the workflow on."""
        deadline = time.monotonic() + self.patience
        pause = FIRST_POLL_SECONDS
        while True:
            # On the event loop, not a thread: one SELECT that neither waits for a writer nor holds one up
            # (_row_status), shorter than a thread's hand-over.
            status = self._row_status(number)
            if status in statuses:
                return status
            if time.monotonic() > deadline:
                raise OrderStuck(f"{number} never reached {what}: the row says {status}")
            # Soon at first, then less often: the callers wait here only for the one activity after a workflow
            # they awaited on the server, so the row usually changes within a few tens of milliseconds (a flat
            # interval added half of itself to every order's latency, twice).
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.poll)

    async def _result(self, handle: WorkflowHandle) -> OrderView:
        return await self._retrying("result", lambda: handle.result(rpc_timeout=RPC_TIMEOUT))
