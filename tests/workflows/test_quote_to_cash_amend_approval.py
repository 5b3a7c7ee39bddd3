"""QuoteToCash: an amendment whose prices meet a rule of the quote approval policy goes to approval instead of
being refused, on a real Temporal dev server with the real activities over SQLite.

The Update answers at once with the amendment pending (nothing written); an ApprovalChain of kind "amendment",
routed by the quote policy's rules that the prices met, decides while the order runs on its old lines. Approved,
the amendment is applied (lines, totals, the credit note for invoiced units priced down, the ledger); rejected or
sent back, it is dropped and the rep hears of it; approved after the order moved on, it is refused then; a
cancelled order takes its chain with it. The requester never approves their own amendment.

The world is test_quote_to_cash.py's: the two-step quote policy (a concession above 10 % needs a sales manager),
Elektro Muster (C-1000) at contractor prices, LAMP-200 45.00 from 10 pieces (invoiced at confirmation, 20 on hand),
CAB-100 9.00 (invoiced on delivery); VAT 19 %.
"""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session
from temporalio.client import WorkflowHandle

from models import order_views
from models.approvals import ApprovalRequest, HumanTask, OutboxMessage
from models.common import utcnow
from models.orders import QuoteDraft, create_quote, quote_identity
from models.records import AuditEvent
from models.users import User
from tests.workflows.histories import keep_history
from tests.workflows.test_quote_to_cash import (  # noqa: F401  (world is a fixture)
    CUSTOMER_ACTOR,
    MANAGER,
    assert_ledger_balances,
    invoices,
    lines,
    number,
    open_task,
    order_row,
    pay,
    receivable,
    refused,
    ship,
    status,
    until,
    world,
)
from tests.sales_world import CABLE, LAMP
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.contracts import (
    Actor,
    AmendedLine,
    AmendOrderCommand,
    DecideCommand,
    QuoteCommand,
    QuoteLineInput,
    QuoteToCashInput,
    amendment_request_key,
    approval_id,
    q2c_id,
)
from workflows.quote_to_cash import QuoteToCash
from workflows.search_attributes import new_order_attributes

# A rep who is a sales manager too: a candidate for the amendment's task, and still not its approver.
SUE = Actor("sue.sales", ("sales", "sales-manager"))
OTHER_MANAGER = Actor("max.manager", ("sales-manager",))


async def start(temporal_env, task_queue, engine, customer: str, rep: Actor, lines_) -> WorkflowHandle:
    """What the API does (test_quote_to_cash.start, for a rep of our choosing): the quote row, then its workflow."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        order = create_quote(s, QuoteDraft(customer, tuple(QuoteLineInput(sku, D(q)) for sku, q in lines_)),
                             rep=rep.username, today=utcnow().date())
        total, customer_code, warehouse_code = quote_identity(s, order.number)
    return await temporal_env.client.start_workflow(
        QuoteToCash.run, QuoteToCashInput(order.number, rep.username, standing_timers=True), id=q2c_id(order.number),
        task_queue=task_queue,
        search_attributes=new_order_attributes(amount_total=total, rep=rep.username, customer_code=customer_code,
                                               warehouse_code=warehouse_code))


async def confirmed_order(temporal_env, worker, engine, world, rep: Actor = SUE) -> WorkflowHandle:
    """20 lamps (45.00, invoiced at confirmation: 900.00 + 171.00) and 10 cables (9.00) for Elektro Muster,
    confirmed, every unit reserved and in shipment 1."""
    handle = await start(temporal_env, worker, engine, world.customer_code, rep, [(LAMP, "20"), (CABLE, "10")])
    await handle.execute_update(QuoteToCash.submit, QuoteCommand(rep))
    await status(handle, "sent")
    assert await handle.execute_update(QuoteToCash.accept, QuoteCommand(CUSTOMER_ACTOR)) == "confirmed"
    assert [(i.kind, i.amount_total) for i in invoices(engine, number(handle))] == [("invoice", D("1071.00"))]
    return handle


def cheaper_lamps(actor: Actor, comment: str = "", **kw) -> AmendOrderCommand:
    # Lamps at 40.00: 890.00 for 990.00 agreed is 10.101 % off, past the policy's 10 %.
    return AmendOrderCommand(actor, (QuoteLineInput(LAMP, D("20"), unit_price=D("40.00")),
                                     QuoteLineInput(CABLE, D("10"))), comment=comment, **kw)


def chain_of(client, quote: str, n: int = 1):
    return client.get_workflow_handle_for(ApprovalChainWorkflow.run, approval_id(amendment_request_key(quote, n)))


def task_row(engine, task_key: str) -> HumanTask:
    with Session(engine) as s:
        return s.scalars(select(HumanTask).where(HumanTask.task_key == task_key)).one()


def request_status(engine, request_key: str) -> str:
    with Session(engine) as s:
        return s.scalars(select(ApprovalRequest.status).where(ApprovalRequest.request_key == request_key)).one()


def rep_notices(engine, quote: str) -> list[tuple[str, str]]:
    """(message key, subject) of the amendment notices that did not reach the customer."""
    with Session(engine) as s:
        return [(m.message_key, m.subject) for m in s.scalars(
            select(OutboxMessage).where(OutboxMessage.message_key.startswith(f"{quote}/amend/"))
            .order_by(OutboxMessage.id))]


async def pending_amendment(handle: WorkflowHandle, cmd: AmendOrderCommand):
    """Send the amendment; it must come back pending, with nothing applied."""
    answer = await handle.execute_update(QuoteToCash.amend_order, cmd)
    assert answer.pending_amendment is not None, answer
    return answer


async def cheaper_lamps_awaiting_approval(temporal_env, worker, engine, world) -> tuple[WorkflowHandle, str, str]:
    """A confirmed order whose rep (Sue) asked for cheaper lamps, beyond the policy: (handle, quote, the open
    approval task's key)."""
    handle = await confirmed_order(temporal_env, worker, engine, world)
    quote = number(handle)
    await pending_amendment(handle, cheaper_lamps(SUE))
    return handle, quote, await open_task(temporal_env.client, amendment_request_key(quote, 1))


async def test_an_amendment_beyond_the_policy_waits_for_approval_then_applies(temporal_env, worker, people_engine,
                                                                              world):
    engine, client = people_engine, temporal_env.client
    handle = await confirmed_order(temporal_env, worker, engine, world)
    quote = number(handle)
    request_key = amendment_request_key(quote, 1)

    answer = await pending_amendment(handle, cheaper_lamps(SUE, "matches a competitor", expected_version=1))
    # The order as it stands (nothing written), and what waits: the lamp line 45.00 → 40.00, 1,059.10 in all.
    assert (answer.version, answer.status, answer.amount_total) == (1, "confirmed", D("1178.10"))
    pending = answer.pending_amendment
    assert (pending.request_key, pending.approval_workflow_id, pending.key, pending.requested_by) == (
        request_key, approval_id(request_key), f"{quote}/amend/1", SUE.username)
    assert (pending.summary, pending.amount_total_before, pending.amount_total) == (
        f"{LAMP} price 45.00 → 40.00", D("1178.10"), D("1059.10"))
    assert pending.reason == ("the quote approval policy (version 1) asks for approval when discount % > 10 "
                              "(discount>10: Sales manager approval)")
    assert pending.lines == (AmendedLine(1, LAMP, D("20"), D("20"), D("45.00"), D("40.00"), D("0"), D("0"),
                                         D("800.00")),)
    view = await handle.query(QuoteToCash.view)
    assert view.pending_amendment == pending
    assert [(e.what, e.actor) for e in view.timeline][-1] == ("amendment awaits approval", SUE.username)
    assert {ln.line_no: (ln.unit_price, ln.quantity) for ln in lines(engine, quote).values()} == {
        1: (D("45.00"), D("20")), 2: (D("9.00"), D("10"))}
    assert order_row(engine, quote).version == 1

    # One amendment at a time.
    why = await refused(handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        SUE, (QuoteLineInput(LAMP, D("20")), QuoteLineInput(CABLE, D("12"))))), "OrderStateInvalid")
    assert "already has an amendment awaiting approval" in why

    # The chain: kind "amendment", routed by the quote policy's rule the prices met, with the amended facts.
    task = await open_task(client, request_key)
    row = task_row(engine, task)
    assert (row.kind, row.policy_kind, row.rule_ids, row.candidate_groups, row.requester, row.document_ref) == (
        "amendment", "quote", ["discount>10"], ["sales-manager"], SUE.username, quote)
    with Session(engine) as s:
        request = s.scalars(select(ApprovalRequest).where(ApprovalRequest.request_key == request_key)).one()
        assert (request.facts["discount_percent"], request.facts["amount"]) == ("10.101", "890.00")
        assert request.details["lines"] == [{
            "line_no": 1, "sku": LAMP, "quantity": "20.000", "unit_price": "40.00", "discount_percent": "0.000",
            "subtotal": "800.00", "quantity_before": "20.000", "unit_price_before": "45.00",
            "discount_percent_before": "0.000"}]
        # The order page and the API list it with the order's approval tasks.
        assert task in [t.task_key for t in order_views.order_tasks(s, quote)]

    # Segregation of duties: the rep who asked may not approve (nor claim) it, though a sales manager.
    chain = chain_of(client, quote)
    await refused(chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(task, SUE, "approved")),
                  "SegregationOfDuties")

    # The order runs on meanwhile: a payment is taken on the old lines.
    assert await pay(engine, client, reference="BANK-AA-1", customer=world.customer_code, amount="500.00") == [quote]
    await until(handle, lambda v: "payment received" in [e.what for e in v.timeline], "payment")

    await chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(task, MANAGER, "approved", "fine"))
    view = await until(handle, lambda v: v.pending_amendment is None and v.version == 2, "amendment applied")
    whats = [(e.what, e.actor) for e in view.timeline]
    assert ("amendment approved", MANAGER.username) in whats
    assert ("order amended (version 2)", SUE.username) in whats
    # The 20 lamps invoiced at 45.00 get 5.00 each back: 100.00 + 19.00 VAT.
    docs = invoices(engine, quote)
    assert [(d.kind, d.amount_total) for d in docs] == [("invoice", D("1071.00")), ("credit_note", D("119.00"))]
    applied = [e.detail for e in view.timeline if e.what == "order amended (version 2)"]
    assert applied == [f"{LAMP} price 45.00 → 40.00; total 1059.10; credit note {docs[1].number} for 119.00 "
                       "(matches a competitor)"]
    assert {ln.line_no: (ln.unit_price, ln.manual_price) for ln in lines(engine, quote).values()} == {
        1: (D("40.00"), True), 2: (D("9.00"), False)}
    row = order_row(engine, quote)
    assert (row.version, row.amount_total, row.amount_invoiced) == (2, D("1059.10"), D("952.00"))
    assert request_status(engine, request_key) == "approved"
    with Session(engine) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "order.amended",
                                                   AuditEvent.entity_id == quote)).one()
        assert (event.actor, event.data["approval_key"], event.data["approved_by"]) == (
            SUE.username, request_key, [MANAGER.username])
        assert s.scalars(select(OutboxMessage.subject).where(
            OutboxMessage.message_key == f"{quote}:amended:2:customer")).one() == f"Order {quote} amended"

    # Shipped and paid at the new price: 1,059.10 in all, 500.00 of it paid before.
    await ship(client, handle, 1)
    await status(handle, "delivered")
    assert [d.amount_total for d in invoices(engine, quote)] == [D("1071.00"), D("119.00"), D("107.10")]
    assert receivable(engine, world.customer_id) == D("559.10")
    await pay(engine, client, reference="BANK-AA-2", customer=world.customer_code, amount="559.10")
    view = await handle.result()
    assert view.status == "done" and receivable(engine, world.customer_id) == 0
    assert rep_notices(engine, quote) == []  # nothing went wrong: the rep was only told by the chain
    assert_ledger_balances(engine)
    await keep_history(handle, "q2c_amend_approved_standing")
    await keep_history(chain, "approval_amendment_approved")


async def test_a_rejected_amendment_leaves_the_order_as_it_was(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    handle, quote, task = await cheaper_lamps_awaiting_approval(temporal_env, worker, engine, world)
    await chain_of(client, quote).execute_update(ApprovalChainWorkflow.decide, DecideCommand(
        task, MANAGER, "rejected", "no, the competitor's lamps are another model"))

    view = await until(handle, lambda v: v.pending_amendment is None, "amendment dropped")
    rejected = [(e.what, e.actor, e.detail) for e in view.timeline if e.what == "amendment rejected"]
    assert rejected == [("amendment rejected", MANAGER.username,
                         f"{LAMP} price 45.00 → 40.00: no, the competitor's lamps are another model")]
    row = order_row(engine, quote)
    assert (row.version, row.amount_total, row.amount_invoiced) == (1, D("1178.10"), D("1071.00"))
    assert lines(engine, quote)[1].unit_price == D("45.00")
    assert [d.kind for d in invoices(engine, quote)] == ["invoice"]
    assert request_status(engine, amendment_request_key(quote, 1)) == "rejected"
    # The rep hears of it, the customer does not (the amendment never happened for them).
    assert rep_notices(engine, quote) == [(f"{quote}/amend/1:amendment_rejected:{SUE.username}",
                                           f"Order {quote}: amendment not approved")]

    # The rep amends again (the next amend key): within the policy it applies at once.
    answer = await handle.execute_update(QuoteToCash.amend_order, AmendOrderCommand(
        SUE, (QuoteLineInput(LAMP, D("20"), unit_price=D("42.00")), QuoteLineInput(CABLE, D("10")))))
    assert (answer.pending_amendment, answer.version, answer.amount_total) == (None, 2, D("1106.70"))
    assert_ledger_balances(engine)


async def test_a_rejected_amendment_asked_by_a_manager_reaches_the_manager_and_the_rep(temporal_env, worker,
                                                                                       people_engine, world):
    engine, client = people_engine, temporal_env.client
    handle = await confirmed_order(temporal_env, worker, engine, world)
    quote = number(handle)
    # Max (a sales manager, not the order's rep) asks for the cheaper lamps; Mia rejects them.
    answer = await pending_amendment(handle, cheaper_lamps(OTHER_MANAGER, "customer called me"))
    assert answer.pending_amendment.requested_by == OTHER_MANAGER.username
    task = await open_task(client, amendment_request_key(quote, 1))
    await chain_of(client, quote).execute_update(ApprovalChainWorkflow.decide, DecideCommand(
        task, MANAGER, "rejected", "below our floor"))

    await until(handle, lambda v: v.pending_amendment is None, "amendment dropped")
    key = f"{quote}/amend/1:amendment_rejected"
    assert rep_notices(engine, quote) == [(f"{key}:{SUE.username}", f"Order {quote}: amendment not approved"),
                                          (f"{key}:{OTHER_MANAGER.username}", f"Order {quote}: amendment not approved")]
    with Session(engine) as s:
        to_max = s.scalars(select(OutboxMessage).where(OutboxMessage.message_key == f"{key}:max.manager")).one()
        assert to_max.recipient == s.scalars(select(User.email).where(User.username == "max.manager")).one()
        assert "max.manager asked for" in to_max.body and "below our floor" in to_max.body
    assert (order_row(engine, quote).version, lines(engine, quote)[1].unit_price) == (1, D("45.00"))


async def test_changes_requested_on_an_amendment_count_as_a_rejection(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    handle, quote, task = await cheaper_lamps_awaiting_approval(temporal_env, worker, engine, world)
    chain = chain_of(client, quote)
    await chain.execute_update(ApprovalChainWorkflow.decide, DecideCommand(
        task, OTHER_MANAGER, "changes_requested", "42.00 at most"))

    view = await until(handle, lambda v: v.pending_amendment is None, "amendment sent back")
    assert [(e.what, e.actor, e.detail) for e in view.timeline if e.what == "amendment sent back"] == [
        ("amendment sent back", OTHER_MANAGER.username, f"{LAMP} price 45.00 → 40.00: 42.00 at most")]
    # The chain does not wait for a resubmission: it ended, its request is closed, no task is left open.
    assert (await chain.result()).outcome == "cancelled"
    assert request_status(engine, amendment_request_key(quote, 1)) == "cancelled"
    with Session(engine) as s:
        open_rows = s.scalars(select(HumanTask).where(HumanTask.document_ref == quote,
                                                      HumanTask.status.in_(("ready", "reserved")))).all()
        assert open_rows == []
    assert (order_row(engine, quote).version, lines(engine, quote)[1].unit_price) == (1, D("45.00"))
    assert rep_notices(engine, quote) == [(f"{quote}/amend/1:amendment_rejected:{SUE.username}",
                                           f"Order {quote}: amendment not approved")]


async def test_an_amendment_approved_after_the_order_moved_on_is_refused_then(temporal_env, worker, people_engine,
                                                                              world):
    engine, client = people_engine, temporal_env.client
    handle, quote, task = await cheaper_lamps_awaiting_approval(temporal_env, worker, engine, world)
    # Meanwhile everything ships: a delivered order is not amended any more.
    await ship(client, handle, 1)
    await status(handle, "delivered")

    await chain_of(client, quote).execute_update(ApprovalChainWorkflow.decide,
                                                 DecideCommand(task, MANAGER, "approved"))
    view = await until(handle, lambda v: v.pending_amendment is None, "amendment settled")
    refusals = [(e.actor, e.detail) for e in view.timeline if e.what == "approved amendment not applied"]
    assert len(refusals) == 1 and refusals[0][0] == "system"
    assert refusals[0][1].startswith(f"{LAMP} price 45.00 → 40.00: order {quote} is delivered: only a confirmed "
                                     "order")
    row = order_row(engine, quote)
    assert (row.version, row.status, row.amount_total) == (1, "delivered", D("1178.10"))
    assert [d.kind for d in invoices(engine, quote)] == ["invoice", "invoice"]  # lamps, then the shipped cables
    assert rep_notices(engine, quote) == [(f"{quote}/amend/1:amendment_refused:{SUE.username}",
                                           f"Order {quote}: amendment not applied")]
    assert_ledger_balances(engine)


async def test_cancelling_the_order_cancels_the_pending_amendment(temporal_env, worker, people_engine, world):
    engine, client = people_engine, temporal_env.client
    handle, quote, task = await cheaper_lamps_awaiting_approval(temporal_env, worker, engine, world)

    assert await handle.execute_update(QuoteToCash.cancel, QuoteCommand(MANAGER, "customer withdrew")) == "cancelled"
    assert (await chain_of(client, quote).result()).outcome == "cancelled"
    assert task_row(engine, task).status == "cancelled"
    assert request_status(engine, amendment_request_key(quote, 1)) == "cancelled"
    view = await handle.result()
    whats = [e.what for e in view.timeline]
    assert view.pending_amendment is None and whats.index("amendment dropped") < whats.index("order cancelled")
    # The lamps invoiced at confirmation are credited in full by the cancellation (not by the amendment).
    assert [(d.kind, d.amount_total) for d in invoices(engine, quote)] == [
        ("invoice", D("1071.00")), ("credit_note", D("1071.00"))]
    assert receivable(engine, world.customer_id) == 0
    assert_ledger_balances(engine)
