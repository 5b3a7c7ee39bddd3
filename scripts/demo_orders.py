"""Demo orders for `make run`: a handful of quotes taken through the real processes to the states people work on,
so every role finds something on their first visit (the rep a draft and a sent quote, the sales manager a discount
to approve, the credit controller a hold, the warehouse a shipment to pick, finance an invoice to collect), and the
customer those quotes are for gets a portal login, buyer.muster, who finds the sent quote to accept at /portal.

Everything goes through the same paths as the pages: quote rows by models.orders.create_quote, then the
QuoteToCash workflow and its Updates, with the demo people as actors. Runs once: when any sales order exists, it
does nothing. `python -m scripts.demo_orders` runs it against the settings' database and Temporal server (a worker
must be polling the task queue).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy

from api.routes.users import set_groups
from models.common import LocationUsage, utcnow
from models.db import transaction
from models.demo import DEMO_PASSWORD
from models.masterdata import Customer, Location, Pricelist, Product, Warehouse
from models.orders import QuoteDraft, create_quote
from models.sales import SalesOrder
from models.stock import Quant
from models.users import CUSTOMER_ROLE, User, hash_password
from workflows.contracts import (
    QUOTE_TO_CASH_WORKFLOW,
    Actor,
    OrderView,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    ShipmentState,
    ShipmentStepCommand,
    q2c_id,
    shipment_id,
)

REP = Actor("sam.sales", ("sales",))
CUSTOMER_ACCEPTS = Actor("sam.sales", ("sales",))  # the rep records the customer's acceptance
# The contact person of the customer the demo quotes are for (the sent one waits for them in the portal).
CONTACT_USERNAME, CONTACT_NAME = "buyer.muster", "Bernd Muster"
WAREHOUSE = Actor("walter.warehouse", ("warehouse",))
WAIT_SECONDS = 60


class DemoOrdersError(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    """One demo order: which customer, how many lines and how far it goes."""

    name: str
    goal: str  # draft, approval, sent, confirmed, credit_hold, delivered
    discount: Decimal = Decimal(0)
    lines: int = 2
    quantity: Decimal = Decimal(5)


PLANS = (
    Plan("draft", "draft", lines=3),
    Plan("discount to approve", "approval", discount=Decimal(20)),
    Plan("waiting for the customer", "sent"),
    Plan("shipment to pick", "confirmed", lines=3),
    Plan("credit hold", "credit_hold"),
    Plan("invoice to collect", "delivered"),
)


def _stocked_products(session: Session, warehouse_id: int, need: Decimal, count: int, skip: int) -> list[str]:
    """SKUs with at least `need` available in the warehouse, in a stable order (demo runs look the same)."""
    available = func.sum(Quant.quantity - Quant.reserved)
    rows = session.execute(
        select(Product.sku)
        .join(Quant, Quant.product_id == Product.id)
        .join(Location, Location.id == Quant.location_id)
        .where(Location.warehouse_id == warehouse_id, Location.usage == LocationUsage.internal,
               Product.active.is_(True), Product.list_price > 0)
        .group_by(Product.id, Product.sku)
        .having(available >= need)
        .order_by(Product.sku)
        .offset(skip)
        .limit(count)
    ).all()
    return [sku for (sku,) in rows]


def _customers(session: Session) -> tuple[Customer, Customer]:
    """A customer with room under a generous limit, and the one with the smallest limit (for the hold)."""
    with_branch = select(Customer).where(Customer.active.is_(True), Customer.branch_id.is_not(None))
    # Public-pricelist customers buy at list prices: healthy margins, so only the discounted demo quote needs an
    # approval (and they have no credit limit to trip over).
    public = select(Pricelist.id).where(Pricelist.name == "Public").scalar_subquery()
    roomy = session.scalars(with_branch.where(Customer.pricelist_id == public).order_by(Customer.code)).first()
    tight = session.scalars(with_branch.where(Customer.credit_limit > 0).order_by(Customer.credit_limit,
                                                                                 Customer.code)).first()
    if roomy is None or tight is None:
        raise DemoOrdersError("the demo data has no customers with credit limits; load it first")
    return roomy, tight


def _warehouse_of(session: Session, customer: Customer) -> int:
    warehouse = session.scalars(select(Warehouse).where(Warehouse.branch_id == customer.branch_id)
                                .order_by(Warehouse.id)).first()
    if warehouse is None:
        raise DemoOrdersError(f"customer {customer.code} has no warehouse in its branch")
    return warehouse.id


def write_quotes(engine: Engine) -> list[tuple[Plan, str]] | None:
    """The quote rows, or None when the database already holds sales orders."""
    today = utcnow().date()
    with transaction(engine) as session:
        if session.scalar(select(func.count()).select_from(SalesOrder)):
            return None
        roomy, tight = _customers(session)
        made: list[tuple[Plan, str]] = []
        for index, plan in enumerate(PLANS):
            customer = tight if plan.goal == "credit_hold" else roomy
            quantity = plan.quantity
            skus = _stocked_products(session, _warehouse_of(session, customer), quantity, plan.lines, skip=index * 3)
            if len(skus) < plan.lines:
                raise DemoOrdersError(f"not enough stocked products for the demo order '{plan.name}'")
            lines = [QuoteLineInput(sku=sku, quantity=quantity, discount_percent=plan.discount) for sku in skus]
            if plan.goal == "credit_hold":
                # Enough to go over the smallest credit limit whatever the prices: the order waits on the hold.
                headroom = tight.credit_limit
                price = session.scalar(select(Product.list_price).where(Product.sku == skus[0])) or Decimal(1)
                big = (headroom / price).quantize(Decimal(1)) + 1
                lines = [QuoteLineInput(sku=skus[0], quantity=max(big, quantity))]
            order = create_quote(session, QuoteDraft(customer_code=customer.code, lines=tuple(lines),
                                                     customer_ref=f"DEMO-{index + 1}", channel="web",
                                                     note=f"Demo: {plan.name}"),
                                 rep=REP.username, today=today)
            made.append((plan, order.number))
        return made


async def _update(handle: WorkflowHandle, name: str, arg, result_type=str):
    # Right after the start the workflow may refuse with NotReady until it has loaded the quote.
    for _ in range(100):
        try:
            return await handle.execute_update(name, arg, result_type=result_type)
        except WorkflowUpdateFailedError as err:
            if getattr(err.cause, "type", None) != "NotReady":
                raise
        await asyncio.sleep(0.1)
    raise DemoOrdersError(f"{handle.id} did not get ready for {name}")


async def _until(handle: WorkflowHandle, check, what: str) -> OrderView:
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            view = await handle.query("view", result_type=OrderView)
            if check(view):
                return view
            await asyncio.sleep(0.1)
    raise DemoOrdersError(f"{handle.id}: {what}")  # pragma: no cover (timeout raises first)


async def _advance(client: Client, task_queue: str, plan: Plan, number: str) -> str:
    handle = await client.start_workflow(
        QUOTE_TO_CASH_WORKFLOW, QuoteToCashInput(quote_number=number, rep=REP.username, standing_timers=True),
        id=q2c_id(number), task_queue=task_queue, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    if plan.goal == "draft":
        return "draft"
    await _update(handle, "submit", QuoteCommand(REP, comment="demo"))
    if plan.goal == "approval":
        return (await _until(handle, lambda v: v.status == "pending_approval", "approval")).status
    await _until(handle, lambda v: v.status == "sent", "sent")
    if plan.goal == "sent":
        return "sent"
    await _update(handle, "accept", QuoteCommand(CUSTOMER_ACCEPTS, comment="customer accepted by phone"))
    if plan.goal == "credit_hold":
        return (await _until(handle, lambda v: v.status == "credit_hold", "credit hold")).status
    await _until(handle, lambda v: v.open_shipments, "a shipment")
    if plan.goal == "confirmed":
        return "confirmed"
    shipment = client.get_workflow_handle(shipment_id(number, 1))
    for step in ("picked", "packed", "shipped"):
        await _update(shipment, "step", ShipmentStepCommand(WAREHOUSE, step, tracking_ref="DHL-DEMO-0001"),
                      result_type=ShipmentState)
    return (await _until(handle, lambda v: v.status == "delivered", "delivered")).status


def ensure_demo_contact(engine: Engine) -> str | None:
    """The customer portal's demo login: a contact of the customer the demo quotes are for, with the demo password;
    made once (also in a database whose demo orders came before it). Returns the customer's code when made."""
    with transaction(engine) as session:
        if session.scalar(select(User.id).where(User.username == CONTACT_USERNAME)) is not None:
            return None
        customer, _ = _customers(session)
        user = User(username=CONTACT_USERNAME, full_name=CONTACT_NAME, customer_id=customer.id,
                    email=f"{CONTACT_USERNAME}@customer.example", password_hash=hash_password(DEMO_PASSWORD))
        session.add(user)
        session.flush()
        set_groups(session, user.id, [CUSTOMER_ROLE])
        return customer.code


async def ensure_demo_orders(engine: Engine, client: Client, task_queue: str) -> list[str]:
    """Create and advance the demo orders once; returns "Q-000001 draft", ... (empty when orders existed).
    The customer's portal login (ensure_demo_contact) is made first, whether the orders are new or not."""
    await asyncio.to_thread(ensure_demo_contact, engine)
    made = await asyncio.to_thread(write_quotes, engine)
    if made is None:
        return []
    reached = []
    for plan, number in made:
        reached.append(f"{number} {await _advance(client, task_queue, plan, number)}")
    return reached


async def _main() -> None:
    from config import connect_temporal, load_settings
    from models.db import make_engine

    settings = load_settings()
    engine = make_engine(settings.database_url)
    client = await connect_temporal(settings)
    done = await ensure_demo_orders(engine, client, settings.temporal_task_queue)
    print("demo orders: " + (", ".join(done) if done else "already present"))


if __name__ == "__main__":
    asyncio.run(_main())
