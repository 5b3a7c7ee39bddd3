"""QuoteToCash: one durable workflow per quote (id q2c:<quote number>), from draft to paid; and Shipment, one
child workflow per shipment (id shp:<quote number>-<seq>) that the warehouse drives through pick, pack and ship.

The workflow owns the process state; activities (activities/sales.py) write the rows that reflect it, each one
transaction, idempotent by a natural key (quote number, shipment seq, invoice key, message key), because Temporal
retries them. People act through Updates with validators (immediate refusal, no history event); every handler
re-checks, because two Updates accepted in the same workflow task both pass their validators before either runs.
Handlers only record what was asked; the main loop acts on it, so each step of the process happens in one place
and in one order. A handler that answers "the status after" waits until the main loop has moved on.

    draft ─submit─▶ pending_approval ⇄ changes_requested ─approved─▶ sent ─accept─▶ (credit_hold) ─▶
    (awaiting_customer) ─▶ confirmed ─▶ delivered ─▶ done;   rejected, expired, cancelled end it early.

Approvals are ApprovalChain children: kind "quote" after submit, kind "credit_hold" when the accepted order takes
the customer over the credit limit (ERPNext b5, blocking), kind "amendment" when an amendment's prices meet a price
rule of the quote policy (routed by those rules; applied only once approved, the order runs on meanwhile).
Shortages follow the backorder preference (Odoo b4): ship what is reserved and backorder the rest, wait until
everything is reserved, or ask the customer (48 hours, then ship_available). The customer may instead cancel the
backordered rest (cancel_rest), when asked or later while the order waits for stock. Drop-ship lines get a
shipment of their own that moves none of our stock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.sales import ORDER_INPUT_INVALID, ORDER_STATE_INVALID, STALE_VERSION, SalesActivities
    from workflows.approval_chain import ApprovalChainWorkflow
    from workflows.approval_rules import DocumentKind, RequestFacts
    from workflows.contracts import (
        AMENDMENT_KIND,
        APPROVAL_STATUS_SIGNAL,
        QUOTE_TO_CASH_WORKFLOW,
        SHIPMENT_WORKFLOW,
        AcceptOrderResult,
        Actor,
        AmendmentApproval,
        AmendOrderAnswer,
        AmendOrderCommand,
        AmendOrderInput,
        AmendOrderResult,
        ApprovalChainInput,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalStatusNotice,
        BackorderChoiceCommand,
        CancelBackorderInput,
        CancelBackorderResult,
        CancelOrderInput,
        CancelOrderResult,
        ConfirmOrderInput,
        ConfirmOrderResult,
        CreateShipmentInput,
        CreditCheckResult,
        EditQuoteCommand,
        EditQuoteInput,
        InvoiceInput,
        InvoiceState,
        OrderBalance,
        OrderNotifyInput,
        OrderStatus,
        OrderView,
        PaymentNotice,
        PendingAmendment,
        QuoteCommand,
        QuoteLineState,
        QuoteRef,
        QuoteState,
        QuoteToCashInput,
        RecordShipmentStepInput,
        ReserveOrderResult,
        SetOrderStatusInput,
        SettleOrderInput,
        SettleOrderResult,
        ShipmentInput,
        ShipmentResult,
        ShipmentState,
        ShipmentStatus,
        ShipmentStepCommand,
        TimelineEvent,
        amendment_request_key,
        approval_id,
        shipment_id,
    )
    from workflows.rules import SHIP_AVAILABLE, dunning_dates, split_shortage
    from workflows.search_attributes import (
        TRADEFLOW_CURRENT_GROUP,
        TRADEFLOW_STATUS,
        SearchAttributeBoard,
        approval_attributes,
        order_attributes,
        shipment_attributes,
        starting_attributes,
    )

DB_ACTIVITY = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}

# Backordered lines are tried again when stock_arrived is signalled, and on a timer (a receipt posted without the
# signal, or stock freed by another order's cancellation, is found without anyone telling us): hourly at first,
# then less often, so a backorder that waits for weeks does not fill the history with fruitless retries.
BACKORDER_RETRY = timedelta(hours=1)
BACKORDER_RETRY_MAX = timedelta(hours=24)
# How long the customer has to choose between partial and complete delivery before the default applies.
CUSTOMER_DECISION = timedelta(hours=48)

ZERO = Decimal(0)
ENDED = frozenset({OrderStatus.done, OrderStatus.rejected, OrderStatus.expired, OrderStatus.cancelled})
EDITABLE = frozenset({OrderStatus.draft, OrderStatus.changes_requested})
# A quote not accepted by the end of its validity date closes as expired in any of these.
BEFORE_ACCEPTANCE = frozenset({OrderStatus.draft, OrderStatus.pending_approval, OrderStatus.changes_requested,
                               OrderStatus.sent})
# amend_order: a running order may change its lines here (before the changed quantities ship).
AMENDABLE = frozenset({OrderStatus.confirmed, OrderStatus.awaiting_customer})
CANCEL_REST = "cancel_rest"  # ship what is reserved, cancel the backordered rest (Odoo's "No Backorder", b4)
BACKORDER_CHOICES = ("ship_available", "ship_complete", CANCEL_REST)

# workflow.patched ids: each guards a command that histories recorded before it existed do not have, so orders
# running at the deploy replay as they were recorded and take the new path only from here on.
DROP_SHIP_SHIPMENT_PATCH = "drop-ship-own-shipment"  # the drop-ship lines of a mixed order get their shipment
COLLECTIONS_NOTICE_PATCH = "collections-finance-notice"  # finance hears of an order handed to collections
# After acceptance, steps that ran as several activities in a row with nothing to decide in between run as one
# (accept_order, confirm_order, settle_order): about half the order's activities, each a Temporal round trip and a
# database transaction. Asked once, when the order phase begins, so an order keeps one way for its whole order phase.
FOLDED_STEPS_PATCH = "q2c-folded-steps"

# Who may do what, besides the quote's own rep. The actor comes from the web session, never from a form.
SALES_OFFICE = frozenset({"sales-manager", "admin"})
ACCEPTORS = frozenset({"sales", "sales-manager", "admin", "customer"})
CANCELLERS = frozenset({"sales-manager", "admin", "customer"})
WAREHOUSE = frozenset({"warehouse", "admin"})
SHIPMENT_STEPS = (ShipmentStatus.picked, ShipmentStatus.packed, ShipmentStatus.shipped)


def _refuse(message: str, kind: str, *field_and_reason: str) -> ApplicationError:
    # Input refusals carry (field, reason) as details, as the activities' do, so the API names the field (422).
    return ApplicationError(message, *field_and_reason, type=kind, non_retryable=True)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _q(quantity: Decimal) -> str:
    """A quantity as people write it: 24, 2.5 (the columns carry three decimals)."""
    return format(quantity.normalize(), "f")


def _end_of(day: date) -> datetime:
    return _start_of(day + timedelta(days=1))


def _customer(quote: QuoteState) -> str:
    # Payloads from before customer_name existed carry only the code.
    # Titles are stored in 200 characters; a long legal name is cut, the code stays whole.
    return f"{quote.customer_name[:120]} ({quote.customer_code})" if quote.customer_name else quote.customer_code


def concession_of(quote: QuoteState) -> Decimal:
    return quote.concession_percent if quote.concession_percent is not None else quote.discount_percent


def quote_facts(quote: QuoteState, rep: str) -> RequestFacts:
    """What the quote approval policy decides on. The API uses the same function for the facts it resubmits to
    the chain after the rep's edit, so an edited quote is judged exactly as a new one would be."""
    # "discount %" in a quote policy is the rep's concession off the customer's pricelist prices: a key account's
    # agreed 25 % is not news to approve on every quote (payloads from before it existed carry None).
    concession = concession_of(quote)
    return RequestFacts(
        amount=quote.amount_untaxed,
        discount_percent=concession,
        margin_percent=quote.margin_percent,
        customer_segment=quote.customer_segment,
        # A policy rule names one category; the quote's first (largest) category stands for the quote.
        category=quote.categories[0] if quote.categories else "",
        branch=quote.branch,
        requester=rep,
    )


def _quote_details(quote: QuoteState) -> dict:
    """What the approver sees (display only; text so the JSON column keeps exact figures)."""
    return {
        "customer": quote.customer_code,
        "amount_untaxed": str(quote.amount_untaxed),
        "amount_total": str(quote.amount_total),
        "discount_percent": str(concession_of(quote)),
        "discount_vs_list_percent": str(quote.discount_percent),
        "margin_percent": str(quote.margin_percent),
        "valid_until": quote.valid_until.isoformat(),
        "lines": [
            {"sku": ln.sku, "quantity": str(ln.quantity), "unit_price": str(ln.unit_price),
             "subtotal": str(ln.subtotal)}
            for ln in quote.lines
        ],
    }


def _amendment_details(quote: QuoteState, cmd: AmendOrderCommand, asked: AmendmentApproval) -> dict:
    """What the approver of an amendment sees: each changed line before → after, the totals, the rules met."""
    facts = asked.facts

    def text(value) -> str:
        return "" if value is None else str(value)

    return {
        "customer": quote.customer_code,
        "change": asked.summary,
        "why_approval": asked.reason,
        "comment": cmd.comment,
        "amount_total_before": str(asked.amount_total_before),
        "amount_total": str(asked.amount_total),
        "amount_untaxed": str(facts.amount),
        "discount_percent": str(facts.discount_percent),
        "margin_percent": str(facts.margin_percent),
        "lines": [
            {"line_no": ln.line_no, "sku": ln.sku, "quantity": str(ln.quantity),
             "unit_price": str(ln.unit_price), "discount_percent": str(ln.discount_percent),
             "subtotal": str(ln.subtotal), "quantity_before": str(ln.quantity_before),
             "unit_price_before": text(ln.unit_price_before),
             "discount_percent_before": text(ln.discount_percent_before)}
            for ln in asked.lines
        ],
    }


def _activity_refusal(err: ActivityError) -> ApplicationError:
    """An activity's business refusal, handed on to the person whose Update caused it, with its type and
    details (e.g. the field an OrderInputError names), so the API can answer 409/422 instead of 500."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True)
    return ApplicationError(str(cause or err), type="ActivityFailed", non_retryable=True)


@workflow.defn(name=QUOTE_TO_CASH_WORKFLOW)
class QuoteToCash:
    @workflow.init
    def __init__(self, request: QuoteToCashInput) -> None:
        self._request = request
        self._number = request.quote_number
        # Flushed by _wait: what operators see is where the order waits, one upsert per wait at most.
        self._board = SearchAttributeBoard.for_this_run(flush_on_yield=False)
        self._quote: QuoteState | None = None
        self._status: str = OrderStatus.draft
        self._timeline: list[TimelineEvent] = []
        self._waiting_for = "the quote to load"
        self._group = ""
        # What people asked for; the main loop acts on it.
        self._submit: QuoteCommand | None = None
        self._accept: QuoteCommand | None = None
        self._cancel: QuoteCommand | None = None
        self._backorder_choice: BackorderChoiceCommand | None = None
        self._cancel_rest: BackorderChoiceCommand | None = None  # cancel_rest asked while a backorder waits
        self._answering_rest = False  # the main loop took it: the Update answers once the order has settled
        self._rest_cancels = 0  # numbers the cancel_backorder keys
        self._short = False  # a confirmed order waits for stock (what cancel_rest may cancel)
        self._drop_ship_started = False
        self._editing = False
        self._settling = False  # a reservation pass runs: accept / choose_backorder answer after it
        # The status being written right now: the row says it a moment before this workflow's own status does, and
        # a person acting on what the page shows (accept a quote just approved) must not be refused in that gap.
        self._becoming: str | None = None
        self._edits = 0  # counts edits, so a wait on the validity date wakes when the date may have moved
        # standing_timers: the timer of the current deadline, kept across the waits that share it (see _wait).
        self._timer: asyncio.Task | None = None
        self._timer_due: datetime | None = None
        # Signals, and how many of each the main loop has handled (they may arrive during any await).
        self._payments: list[PaymentNotice] = []
        self._payments_handled = 0
        self._stock_arrivals = 0
        self._stock_handled = 0
        self._approval_notices: list[ApprovalStatusNotice] = []
        self._notices_handled = 0
        # Children
        self._approval_wf: str | None = None
        self._credit_wf: str | None = None
        self._shipments: dict[int, workflow.ChildWorkflowHandle] = {}
        self._shipment_numbers: dict[int, str] = {}
        self._settled_shipments: set[int] = set()
        # Money
        self._invoices = 0
        self._balance: OrderBalance | None = None
        self._reminded: dict[date, int] = {}  # due date -> reminders sent for it
        self._folded = False  # FOLDED_STEPS_PATCH: this order's order phase runs the folded activities
        self._accepted_reservation: ReserveOrderResult | None = None  # made by accept_order, not yet taken
        # amend_order: the Update records the command, the main loop applies it at a point where no other order
        # activity runs (invoice keys and the reservation pass stay in one order); the answer goes back here.
        self._amend: AmendOrderCommand | None = None
        self._amend_answer: QuoteState | ApplicationError | None = None
        self._amendments = 0  # numbers the amend keys
        # An amendment whose prices meet a rule of the quote policy waits for its ApprovalChain (nothing of it is
        # written yet; no other amendment is taken meanwhile); the main loop applies or drops it once decided.
        self._pending_amendment: PendingAmendment | None = None
        self._amendment_chain: workflow.ChildWorkflowHandle | None = None
        self._amendment_sent_back: str | None = None  # an approver asked for changes: taken as a rejection

    # ----------------------------------------------------------------------------------------------- run

    @workflow.run
    async def run(self, request: QuoteToCashInput) -> OrderView:
        self._quote = await self._act(SalesActivities.load_quote, QuoteRef(self._number))
        self._status = self._quote.status
        self._event("quote created", request.rep, f"{self._quote.customer_code}, {self._quote.amount_total}")
        self._publish()
        if await self._quote_phase():
            await self._order_phase()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._board.flush()  # nothing is left after that wait; a guard, should a later edit set one late
        return self.view()

    # ------------------------------------------------------------------------------------- the quote

    async def _quote_phase(self) -> bool:
        """Draft, approval and the customer's acceptance. True when accepted; False when it ended early."""
        while True:
            self._show(f"submission by {self._request.rep}", "sales")
            if not await self._wait(lambda: self._submit is not None or self._cancel is not None, self._expiry):
                await self._expire()
                return False
            if self._cancel is not None:
                await self._cancel_everything()
                return False
            outcome = await self._approve_quote(self._submit)
            if outcome == "draft":
                continue  # the chain could not run; the rep may submit again
            if outcome != OrderStatus.sent:
                return False
            break

        self._show("customer acceptance", "customer")
        if not await self._wait(lambda: self._accept is not None or self._cancel is not None, self._expiry):
            await self._expire()
            return False
        if self._cancel is not None:
            await self._cancel_everything()
            return False
        return True

    async def _approve_quote(self, cmd: QuoteCommand) -> str:
        """Run the quote's ApprovalChain; the status it leaves: sent, rejected, expired, cancelled or draft."""
        quote = self._quote
        await self._set_status(OrderStatus.pending_approval, cmd.actor.username, cmd.comment or "submitted")
        self._event("submitted for approval", cmd.actor.username, cmd.comment)
        request_key = f"quote:{self._number}"
        facts = quote_facts(quote, self._request.rep)
        handle = await workflow.start_child_workflow(
            ApprovalChainWorkflow.run,
            ApprovalChainInput(
                request_key=request_key,
                kind=DocumentKind.quote.value,
                document_ref=self._number,
                title=f"Quote {self._number} for {_customer(quote)}",
                requester=self._request.rep,
                facts=facts,
                details=_quote_details(quote),
                branch=quote.branch,
            ),
            id=approval_id(request_key),
            search_attributes=self._child_attributes(approval_attributes(
                kind=DocumentKind.quote.value, requester=self._request.rep, amount=facts.amount)),
        )
        self._approval_wf = handle.id
        self._submit = None
        self._show("approval (see the approval chain)", "sales-manager")
        while True:
            in_time = await self._wait(
                lambda: (handle.done() or self._cancel is not None
                         or self._notices_handled < len(self._approval_notices)),
                self._expiry,
            )
            if not in_time or self._cancel is not None:
                reason = "the quote expired" if not in_time else (self._cancel.comment or "quote cancelled")
                await self._stop_chain(handle, reason)
                if not in_time:
                    await self._expire()
                else:
                    await self._cancel_everything()
                return self._status
            if handle.done():
                break
            while self._notices_handled < len(self._approval_notices):
                self._notices_handled += 1
                await self._on_approval_notice(self._approval_notices[self._notices_handled - 1])

        try:
            result: ApprovalResult = handle.result()
        except ChildWorkflowError as err:
            # No policy in force, or a bug in the chain: the rep can submit again once an operator fixed it.
            reason = str(err.cause or err)
            await self._set_status(OrderStatus.draft, "system", f"approval could not run: {reason}")
            self._event("approval could not run", "system", reason)
            return OrderStatus.draft
        deciders = ", ".join(d.actor for d in result.decisions if d.actor) or "policy"
        if result.outcome == ApprovalOutcome.approved:
            await self._set_status(OrderStatus.sent, "system", f"approved by {deciders}")
            self._event("quote approved and sent", deciders, f"policy v{result.policy_version}")
            return OrderStatus.sent
        if result.outcome == ApprovalOutcome.rejected:
            why = "; ".join(d.comment for d in result.decisions if d.outcome in ("rejected", "expired"))
            await self._set_status(OrderStatus.rejected, deciders, why)
            self._event("quote rejected", deciders, why)
            return OrderStatus.rejected
        # The chain gave up on its own (changes requested and never resubmitted): nothing can happen any more.
        await self._set_status(OrderStatus.cancelled, "system", "changes were requested and not resubmitted in time")
        self._event("quote cancelled", "system", "changes were requested and not resubmitted in time")
        return OrderStatus.cancelled

    async def _on_approval_notice(self, notice: ApprovalStatusNotice) -> None:
        if notice.status == "changes_requested" and self._status == OrderStatus.pending_approval:
            await self._set_status(OrderStatus.changes_requested, "system", notice.comment)
            self._event("changes requested", "approver", notice.comment)
            self._show(f"changes by {self._request.rep}", "sales")
        elif notice.status == "pending" and self._status == OrderStatus.changes_requested:
            await self._set_status(OrderStatus.pending_approval, self._request.rep, notice.comment or "resubmitted")
            self._event("resubmitted for approval", self._request.rep, notice.comment)
            self._show("approval (see the approval chain)", "sales-manager")

    async def _expire(self) -> None:
        await self._set_status(OrderStatus.expired, "system", f"not accepted by {self._quote.valid_until}")
        self._event("quote expired", "system", f"valid until {self._quote.valid_until}")

    def _expiry(self) -> datetime | None:
        # The validity date is the last day the customer may accept: the quote closes at the end of that day.
        return _end_of(self._quote.valid_until)

    # ------------------------------------------------------------------------------------- the order

    async def _order_phase(self) -> None:
        accepted = self._accept
        actor = accepted.actor.username
        self._settling = True
        self._event("quote accepted", actor, accepted.comment)
        # A lean run (started since the board existed, long after these patches) takes the patched way without
        # asking: each patched call is an upsert on the server.
        self._folded = self._board.lean or workflow.patched(FOLDED_STEPS_PATCH)
        if self._folded:
            checked: AcceptOrderResult = await self._act(SalesActivities.accept_order, QuoteRef(self._number))
            credit, self._accepted_reservation = checked.credit, checked.reserved
        else:
            credit = await self._act(SalesActivities.check_credit, QuoteRef(self._number))
        if credit.over_limit and not await self._credit_hold(credit, actor):
            return
        await self._fulfil(actor)

    async def _credit_hold(self, credit: CreditCheckResult, accepted_by: str) -> bool:
        """Hold the order until a credit controller releases it or a payment brings the exposure under the
        limit. True when released; False when the order was cancelled."""
        why = f"exposure {credit.exposure} over the credit limit {credit.limit}"
        await self._set_status(OrderStatus.credit_hold, accepted_by, why)
        self._event("credit hold", "system", why)
        await self._notify("hold", f"{self._number}:hold", why)
        quote = self._quote
        request_key = f"credit_hold:{self._number}"
        facts = RequestFacts(amount=credit.this_order, customer_segment=quote.customer_segment, branch=quote.branch,
                             requester=self._request.rep)
        handle = await workflow.start_child_workflow(
            ApprovalChainWorkflow.run,
            ApprovalChainInput(
                request_key=request_key,
                kind=DocumentKind.credit_hold.value,
                document_ref=self._number,
                title=f"Credit hold: {self._number} for {_customer(quote)}",
                requester=self._request.rep,
                facts=facts,
                details={**_quote_details(quote), "exposure": str(credit.exposure), "limit": str(credit.limit),
                         "posted_receivable": str(credit.posted_receivable),
                         "uninvoiced_orders": str(credit.uninvoiced_orders)},
                branch=quote.branch,
                priority=80,  # the customer is waiting for goods they ordered
            ),
            id=approval_id(request_key),
            search_attributes=self._child_attributes(approval_attributes(
                kind=DocumentKind.credit_hold.value, requester=self._request.rep, amount=facts.amount)),
        )
        self._credit_wf = handle.id
        self._settling = False  # the accept Update answers now: credit_hold, with the chain's id known
        self._show("credit release by a credit controller, or a payment", "credit-controller")
        while True:
            await self._wait(lambda: handle.done() or self._cancel is not None or self._new_payments())
            if self._cancel is not None:
                await self._stop_chain(handle, self._cancel.comment or "order cancelled")
                await self._cancel_everything()
                return False
            if handle.done():
                break
            self._take_payments()
            credit = await self._act(SalesActivities.check_credit, QuoteRef(self._number))
            if not credit.over_limit:
                reason = f"payment brought the exposure to {credit.exposure}, within the limit {credit.limit}"
                await self._stop_chain(handle, reason)
                self._event("credit hold released", "system", reason)
                return True

        try:
            result: ApprovalResult = handle.result()
        except ChildWorkflowError as err:
            # Fail closed: the hold stays; a payment or a cancellation still ends it.
            reason = str(err.cause or err)
            self._event("credit approval could not run", "system", reason)
            while True:
                await self._wait(lambda: self._cancel is not None or self._new_payments())
                if self._cancel is not None:
                    await self._cancel_everything()
                    return False
                self._take_payments()
                credit = await self._act(SalesActivities.check_credit, QuoteRef(self._number))
                if not credit.over_limit:
                    self._event("credit hold released", "system", f"exposure {credit.exposure} within the limit")
                    return True
        deciders = ", ".join(d.actor for d in result.decisions if d.actor) or "policy"
        if result.outcome == ApprovalOutcome.approved:
            self._event("credit hold released", deciders, f"policy v{result.policy_version}")
            return True
        why = "; ".join(d.comment for d in result.decisions if d.comment) or result.outcome
        self._event("credit hold not released", deciders, why)
        # Rejected or expired (the policy's expiry action rejects): the order is cancelled with compensation.
        last = next((d.actor for d in reversed(result.decisions) if d.actor), None) or "system"
        await self._cancel_everything(QuoteCommand(Actor(last), f"credit hold not released: {why}"))
        return False

    async def _fulfil(self, accepted_by: str) -> None:
        """Reserve, ship (partial and backorders by the preference), invoice, collect; until done or cancelled."""
        preference = self._quote.backorder_preference
        asked = confirmed = False
        reserve_now = True
        short = False
        retry_at: datetime | None = None
        retry_every = BACKORDER_RETRY
        backordered = ZERO  # what the timeline last said was short
        while True:
            if self._cancel is not None:
                await self._cancel_everything()
                return
            if reserve_now:
                reserve_now = False
                self._settling = True
                if self._accepted_reservation is not None:  # accept_order reserved it, within the credit check
                    reserved, self._accepted_reservation = self._accepted_reservation, None
                else:
                    reserved = await self._act(SalesActivities.reserve_order, QuoteRef(self._number))
                split = self._split(reserved, preference)
                short = split.backorder > 0 or split.wait
                if split.ask and not asked:
                    asked = True
                    preference = await self._ask_customer(reserved, accepted_by)
                    if self._cancel is not None:
                        continue
                    if preference == CANCEL_REST:
                        reserved = await self._cancel_backorder(self._backorder_choice)
                        preference = SHIP_AVAILABLE
                    elif self._accepted_reservation is not None:  # amended while the customer was asked
                        reserved, self._accepted_reservation = self._accepted_reservation, None
                    split = self._split(reserved, preference)
                    short = split.backorder > 0 or split.wait
                self._short = short
                if not confirmed:
                    confirmed = True
                    await self._confirm(accepted_by, reserved)
                if not split.wait:
                    await self._ship_reserved(reserved.lines)
                if short and reserved.shortfall != backordered:  # a fruitless retry is not news
                    self._event("backorder", "system", f"{_q(reserved.shortfall)} short; waiting for stock")
                backordered = reserved.shortfall
                retry_at = workflow.now() + retry_every if short else None
                self._settling = False
            done = await self._settle()
            self._answering_rest = False
            if done:
                if self._amendment_chain is not None:
                    await self._drop_amendment("the order is done: nothing is left to amend")
                return
            self._show_fulfilment(short)
            reminder_at = self._next_reminder()
            deadlines = [d for d in (retry_at, reminder_at) if d is not None]
            await self._wait(
                lambda: (self._cancel is not None or self._stock_arrivals > self._stock_handled
                         or self._new_payments() or bool(self._unsettled_shipments())
                         or self._cancel_rest is not None or self._amend is not None or self._amendment_decided()),
                lambda: min(deadlines) if deadlines else None,
            )
            now = workflow.now()
            if self._amend is not None and self._cancel is None:
                # The amendment reserved what it raised; the pass below ships it (by the backorder preference).
                if await self._apply_amendment():
                    self._settling = reserve_now = True
                    retry_every = BACKORDER_RETRY
                self._amend = None
            if self._amendment_decided() and self._cancel is None:
                # An approved amendment, applied now, is shipped by the same pass as one within the policy.
                if await self._settle_amendment():
                    self._settling = reserve_now = True
                    retry_every = BACKORDER_RETRY
            arrived, self._stock_handled = self._stock_arrivals > self._stock_handled, self._stock_arrivals
            if self._cancel_rest is not None and self._cancel is None:
                # The customer gives up on the backorder: cancel it, then ship whatever is reserved (also under
                # ship_complete, which waited for the part now cancelled).
                self._settling = self._answering_rest = True
                taken, self._cancel_rest = self._cancel_rest, None
                await self._cancel_backorder(taken)
                preference = SHIP_AVAILABLE
                reserve_now = True
            elif short and arrived:
                reserve_now, retry_every = True, BACKORDER_RETRY
            elif short and retry_at is not None and now >= retry_at:
                reserve_now, retry_every = True, min(retry_every * 2, BACKORDER_RETRY_MAX)
            if self._take_payments():
                self._balance = None  # read it again
            if reminder_at is not None and now >= reminder_at:
                await self._remind()

    def _new_payments(self) -> bool:
        return self._payments_handled < len(self._payments)

    def _take_payments(self) -> list[PaymentNotice]:
        """The payments not handled yet (each goes on the timeline once); signals may arrive during any await."""
        new = self._payments[self._payments_handled:]
        self._payments_handled = len(self._payments)
        for payment in new:
            self._event("payment received", "finance", f"{payment.payment_reference}: {payment.amount}")
        return new

    def _split(self, reserved: ReserveOrderResult, preference: str):
        """The order-level shortage split (rules.split_shortage) over the stock lines still to deliver."""
        requested = sum(
            (ln.quantity - ln.qty_delivered - ln.qty_cancelled for ln in reserved.lines if not ln.drop_ship), ZERO
        )
        return split_shortage(requested=requested, reserved=max(requested - reserved.shortfall, ZERO),
                              preference=preference)

    async def _ask_customer(self, reserved: ReserveOrderResult, accepted_by: str) -> str:
        """Shortage with preference "ask": the customer chooses within CUSTOMER_DECISION, else ship_available."""
        why = f"{_q(reserved.shortfall)} short; ship what is there now, or wait for everything?"
        await self._set_status(OrderStatus.awaiting_customer, accepted_by, why)
        self._event("customer asked about backorder", "system", why)
        # A shortage is a delay to the customer; the message asks for their choice.
        await self._notify("delay", f"{self._number}:ask-backorder", why)
        deadline = workflow.now() + CUSTOMER_DECISION
        self._show(f"the customer's backorder choice (until {deadline:%Y-%m-%d %H:%M} UTC)", "customer")
        self._settling = False  # the accept Update answers now: awaiting_customer
        while True:
            woken = await self._wait(lambda: self._backorder_choice is not None or self._cancel is not None
                                     or self._amend is not None or self._amendment_decided(), lambda: deadline)
            if not (woken and (self._amend is not None or self._amendment_decided())
                    and self._backorder_choice is None and self._cancel is None):
                break
            # The customer still chooses; the pass after it uses the new lines.
            if self._amend is not None:
                await self._apply_amendment()
                self._amend = None
            if self._amendment_decided():
                await self._settle_amendment()
        self._settling = True
        if self._cancel is not None:
            return "ship_available"
        if self._backorder_choice is None:
            self._event("no backorder choice in time", "system", "shipping what is available (the default)")
            return "ship_available"
        choice = self._backorder_choice
        self._event("backorder choice", choice.actor.username, choice.choice)
        return choice.choice

    async def _cancel_backorder(self, cmd: BackorderChoiceCommand) -> ReserveOrderResult:
        """cancel_rest: cancel the quantities not reserved (with a credit for any invoiced ahead); the order then
        stands fully reserved for what it still delivers."""
        self._rest_cancels += 1
        result: CancelBackorderResult = await self._act(
            SalesActivities.cancel_backorder,
            CancelBackorderInput(self._number, cmd.actor.username, f"{self._number}/cancel-rest/{self._rest_cancels}"),
        )
        self._balance = None
        detail = (f"{_q(result.cancelled)} cancelled"
                  + (f", credit note {result.credit_note_number} for {result.credit_note_amount}"
                     if result.credit_note_number else ""))
        self._event("backorder cancelled", cmd.actor.username, detail)
        return ReserveOrderResult(lines=result.lines, fully_reserved=True, shortfall=ZERO)

    async def _apply_amendment(self) -> bool:
        """Apply the amendment the Update recorded (one activity: lines, release, credit note, credit check,
        reservation, invoice of ordered-policy increases, notice). True when applied; a refusal goes back to the
        Update. The caller clears self._amend, which answers the Update. An amendment the quote policy sends for
        approval is not applied (False) and not refused: the Update answers with it pending."""
        cmd = self._amend
        self._amendments += 1
        key = f"{self._number}/amend/{self._amendments}"
        try:
            result: AmendOrderResult = await self._act(SalesActivities.amend_order, AmendOrderInput(
                self._number, cmd, key, self._next_invoice_key()))
        except ActivityError as err:
            self._amend_answer = _activity_refusal(err)
            return False
        if result.approval_needed is not None:
            await self._ask_amendment_approval(cmd, key, result)
            self._amend_answer = AmendOrderAnswer.of(result.quote, self._pending_amendment)
            return False
        self._amended(result, cmd)
        self._amend_answer = AmendOrderAnswer.of(result.quote)
        return True

    def _amended(self, result: AmendOrderResult, cmd: AmendOrderCommand) -> None:
        """What an applied amendment changes here: the order, its reservation for the next pass, the timeline."""
        self._quote = result.quote
        self._balance = None
        self._accepted_reservation = result.reserved
        detail = f"{result.summary}; total {result.amount_total}" + (
            f"; credit note {result.credit_note_number} for {result.credit_note_amount}"
            if result.credit_note_number else "") + (f"; released {_q(result.released)}" if result.released else "")
        self._event(f"order amended (version {result.version})", cmd.actor.username,
                    detail + (f" ({cmd.comment})" if cmd.comment else ""))
        if result.invoice.invoice_number is not None:
            self._invoiced(result.invoice)
        self._publish()

    # Amendments beyond the quote policy: only the Update of a new amendment starts one, so no history recorded
    # before they existed reaches this code, and the conditions added to the main loop's waits stay false in them.

    async def _ask_amendment_approval(self, cmd: AmendOrderCommand, key: str, unapplied: AmendOrderResult) -> None:
        """Start the amendment's ApprovalChain, routed by the quote policy's rules its prices met, with the amended
        order's facts; the requester is whoever asked (segregation of duties: they may not approve it)."""
        # The order as the activity read it (unchanged): this workflow's copy may predate the last status.
        quote, asked = unapplied.quote, unapplied.approval_needed
        request_key = amendment_request_key(self._number, self._amendments)
        requester = cmd.actor.username
        handle = await workflow.start_child_workflow(
            ApprovalChainWorkflow.run,
            ApprovalChainInput(
                request_key=request_key,
                kind=AMENDMENT_KIND,
                document_ref=self._number,
                title=f"Amendment of order {self._number} for {_customer(quote)}",
                requester=requester,
                facts=asked.facts,
                details=_amendment_details(quote, cmd, asked),
                branch=quote.branch,
                policy_kind=DocumentKind.quote.value,
                rule_ids=asked.rule_ids,
            ),
            id=approval_id(request_key),
            search_attributes=self._child_attributes(approval_attributes(
                kind=AMENDMENT_KIND, requester=requester, amount=asked.facts.amount)),
        )
        self._amendment_chain = handle
        self._pending_amendment = PendingAmendment(
            request_key=request_key, approval_workflow_id=handle.id, key=key, command=cmd, version=quote.version,
            requested_at=workflow.now(), reason=asked.reason, summary=asked.summary,
            amount_total_before=asked.amount_total_before, amount_total=asked.amount_total, lines=asked.lines)
        self._event("amendment awaits approval", requester,
                    f"{asked.summary}; total {asked.amount_total_before} → {asked.amount_total}; {asked.reason}"
                    + (f" ({cmd.comment})" if cmd.comment else ""))

    def _amendment_decided(self) -> bool:
        """The pending amendment's chain ended, or an approver sent it back (which the chain would wait on)."""
        return self._amendment_chain is not None and (self._amendment_chain.done()
                                                      or self._amendment_sent_back is not None)

    async def _settle_amendment(self) -> bool:
        """Apply the pending amendment if its chain approved it, else drop it; the rep hears when it did not happen.
        True when applied (the order's lines changed)."""
        handle, sent_back = self._amendment_chain, self._amendment_sent_back
        self._amendment_chain = self._amendment_sent_back = None
        try:
            return await self._take_amendment_decision(handle, self._pending_amendment, sent_back)
        finally:
            # Pending until settled: an amendment sent meanwhile is refused, not judged on lines about to change.
            self._pending_amendment = None

    async def _take_amendment_decision(self, handle: workflow.ChildWorkflowHandle, pending: PendingAmendment,
                                       sent_back: str | None) -> bool:
        if not handle.done():
            # Changes requested: the chain would wait for a resubmission, but an amendment is asked afresh instead.
            await self._stop_chain(handle, "changes requested: the rep amends again")
        try:
            result: ApprovalResult = handle.result()
        except ChildWorkflowError as err:
            await self._amendment_not_applied(pending, "amendment approval could not run", "system",
                                              str(err.cause or err), "amendment_rejected")
            return False
        deciders = [d.actor for d in result.decisions if d.actor]
        by = ", ".join(deciders) or "policy"
        if result.outcome != ApprovalOutcome.approved or sent_back is not None:
            why = sent_back or "; ".join(d.comment for d in result.decisions
                                         if d.outcome in ("rejected", "expired") and d.comment) or result.outcome
            what = "amendment sent back" if sent_back is not None else "amendment rejected"
            await self._amendment_not_applied(pending, what, by, why, "amendment_rejected")
            return False
        self._event("amendment approved", by, f"{pending.summary}; policy v{result.policy_version}")
        # Applied as asked, to the version it was asked of; everything but the policy is checked again, so an
        # order that moved on meanwhile (shipped or invoiced below it, over the credit limit) refuses it now.
        cmd = replace(pending.command, expected_version=pending.version)
        try:
            applied: AmendOrderResult = await self._act(SalesActivities.amend_order, AmendOrderInput(
                self._number, cmd, pending.key, self._next_invoice_key(), approval_key=pending.request_key,
                approved_by=tuple(dict.fromkeys(deciders))))
        except ActivityError as err:
            await self._amendment_not_applied(pending, "approved amendment not applied", "system",
                                              _activity_refusal(err).message, "amendment_refused")
            return False
        self._amended(applied, cmd)
        return True

    async def _amendment_not_applied(self, pending: PendingAmendment, what: str, actor: str, why: str,
                                     event: str, again: bool = True) -> None:
        """On the timeline, and to the rep and whoever asked for it (the customer never heard of it): the amendment
        did not happen."""
        self._event(what, actor, f"{pending.summary}: {why}")
        await self._notify(event, f"{pending.key}:{event}",
                           f"The amendment {pending.requested_by} asked for ({pending.summary}) was not applied: "
                           f"{why}." + (" The order stands as it was; amend it again if still needed." if again
                                        else ""), also_to=pending.requested_by)

    async def _drop_amendment(self, why: str) -> None:
        """The order ended (cancelled, done) while an amendment waited: its chain is stopped, its tasks closed."""
        pending = self._pending_amendment
        await self._stop_chain(self._amendment_chain, why)
        self._amendment_chain = self._pending_amendment = self._amendment_sent_back = None
        await self._amendment_not_applied(pending, "amendment dropped", "system", why, "amendment_refused",
                                          again=False)

    async def _confirm(self, accepted_by: str, reserved: ReserveOrderResult) -> None:
        reason = "confirmed" if reserved.fully_reserved else f"confirmed, {_q(reserved.shortfall)} short"
        # Products invoiced on ordered quantities are invoiced at confirmation (Odoo's "ordered" policy).
        ordered = any(ln.invoice_policy == "ordered" for ln in reserved.lines)
        if self._folded:
            # Status, confirmation notice, the ordered lines' invoice and its notice, the balance: one activity.
            self._becoming = OrderStatus.confirmed
            try:
                result: ConfirmOrderResult = await self._act(SalesActivities.confirm_order, ConfirmOrderInput(
                    self._number, accepted_by, reason, self._next_invoice_key() if ordered else None))
            finally:
                self._becoming = None
            self._status = OrderStatus.confirmed
            self._publish()
            self._event("order confirmed", accepted_by)
            if result.invoice.invoice_number is not None:
                self._invoiced(result.invoice)
            self._balance = result.balance
            return
        await self._set_status(OrderStatus.confirmed, accepted_by, reason)
        self._event("order confirmed", accepted_by)
        await self._notify("confirmation", f"{self._number}:confirmation")
        if ordered:
            await self._invoice()

    async def _ship_reserved(self, lines: tuple[QuoteLineState, ...]) -> None:
        state = await self._start_shipment()
        # create_shipment puts reserved stock first and makes a drop-ship shipment only when no stock waits: the
        # drop-ship lines of a mixed order need one of their own, or they would never be delivered.
        if (state is not None and not state.drop_ship and not self._drop_ship_started
                and any(ln.drop_ship and ln.quantity - ln.qty_delivered - ln.qty_cancelled > 0 for ln in lines)
                and (self._board.lean or workflow.patched(DROP_SHIP_SHIPMENT_PATCH))):
            await self._start_shipment()

    async def _start_shipment(self) -> ShipmentState | None:
        seq = len(self._shipments) + 1
        state = await self._act(SalesActivities.create_shipment, CreateShipmentInput(self._number, seq))
        if state is None:
            return None  # everything reserved is already in a shipment
        if state.drop_ship:
            self._drop_ship_started = True
            # create_shipment ordered these lines from their supplier in the same transaction (a confirmed purchase
            # order delivered to the customer, models/purchasing.py); the warehouse records the supplier's delivery
            # on this shipment, which values it supplier -> customer and moves none of our stock.
        handle = await workflow.start_child_workflow(
            ShipmentWorkflow.run, ShipmentInput(state, quiet_steps=True), id=shipment_id(self._number, seq),
            search_attributes=self._child_attributes(shipment_attributes(state.status)),
        )
        self._shipments[seq] = handle
        self._shipment_numbers[seq] = state.shipment_number
        lines = ", ".join(f"{_q(ln.quantity)} {ln.sku}" for ln in state.lines)
        self._event(f"shipment {seq} created", "system",
                    f"{state.shipment_number}: {lines}" + (" (drop-ship)" if state.drop_ship else ""))
        return state

    def _unsettled_shipments(self) -> list[int]:
        return [seq for seq, h in self._shipments.items() if h.done() and seq not in self._settled_shipments]

    def _open_shipments(self) -> list[int]:
        return [seq for seq, h in self._shipments.items() if not h.done()]

    def _take_shipped(self) -> list[tuple[ShipmentResult, str]]:
        """The shipments that ended since the last look, on the timeline; the shipped ones with their lines."""
        shipped = []
        for seq in self._unsettled_shipments():
            self._settled_shipments.add(seq)
            self._balance = None
            try:
                result: ShipmentResult = self._shipments[seq].result()
            except ChildWorkflowError as err:
                self._event(f"shipment {seq} failed", "system", str(err.cause or err))
                continue
            if result.status != ShipmentStatus.shipped:
                self._event(f"shipment {seq} {result.status}", "system", result.shipment_number)
                continue
            lines = ", ".join(f"{_q(ln.quantity)} {ln.sku}" for ln in result.shipped)
            self._event(f"shipment {seq} shipped", "warehouse", f"{result.shipment_number}: {lines}")
            shipped.append((result, lines))
        return shipped

    async def _settle_shipments(self) -> None:
        # Per shipped shipment, in order: its notice, then the invoice of what it delivered.
        for result, lines in self._take_shipped():
            await self._notify("shipment", f"{result.shipment_number}:shipped", lines)
            await self._invoice()

    async def _settle(self) -> bool:
        """Invoice what shipped, read the balance, move to delivered / done. True when the order is done."""
        if self._folded:
            return await self._settle_folded()
        await self._settle_shipments()
        if self._balance is None:
            self._balance = await self._act(SalesActivities.order_balance, QuoteRef(self._number))
        balance = self._balance
        if self._open_shipments() or not balance.fully_delivered:
            return False
        if not balance.fully_invoiced:
            if await self._invoice() is not None:
                self._balance = balance = await self._act(SalesActivities.order_balance, QuoteRef(self._number))
        if self._status == OrderStatus.confirmed:
            await self._set_status(OrderStatus.delivered, "system", "everything shipped")
            self._event("order delivered", "system")
        if balance.fully_invoiced and balance.amount_due <= ZERO:
            await self._set_status(OrderStatus.done, "system", "delivered, invoiced and paid")
            self._event("order done", "system", f"invoiced {balance.amount_invoiced}, paid {balance.amount_paid}")
            self._show("nothing: the order is done", "")
            return True
        return False

    async def _settle_folded(self) -> bool:
        """_settle under FOLDED_STEPS_PATCH: the shipment notices, the invoice of what shipped, the balance and the
        moves to delivered and done in one settle_order activity, run only when something may have changed."""
        notices = [OrderNotifyInput(self._number, f"{result.shipment_number}:shipped", "shipment", lines)
                   for result, lines in self._take_shipped()]
        close = not self._open_shipments()
        balance = self._balance
        if balance is not None and not (close and balance.fully_delivered and (
                self._status == OrderStatus.confirmed or not balance.fully_invoiced or balance.amount_due <= ZERO)):
            return False  # nothing new: the balance read last still stands
        key = self._next_invoice_key()
        self._becoming = OrderStatus.delivered if close and self._status == OrderStatus.confirmed else None
        try:
            settled: SettleOrderResult = await self._act(SalesActivities.settle_order, SettleOrderInput(
                self._number, tuple(notices), invoice_key=key if notices else None, rest_invoice_key=key,
                close=close))
        finally:
            self._becoming = None
        for invoice in settled.invoices:
            self._invoiced(invoice)
        self._balance = balance = settled.balance
        if settled.status == self._status:
            return False
        if self._status == OrderStatus.confirmed:
            self._status = OrderStatus.delivered
            self._event("order delivered", "system")
        if settled.status == OrderStatus.done:
            self._status = OrderStatus.done
            self._event("order done", "system", f"invoiced {balance.amount_invoiced}, paid {balance.amount_paid}")
            self._publish()
            self._show("nothing: the order is done", "")
            return True
        self._publish()
        return False

    def _next_invoice_key(self) -> str:
        # Counts only invoices written: a key that found nothing to invoice stays free for the next one.
        return f"{self._number}/inv/{self._invoices + 1}"

    def _invoiced(self, invoice: InvoiceState) -> None:
        self._invoices += 1
        self._balance = None
        self._event("invoiced", "system", f"{invoice.invoice_number}: {invoice.amount_total}, due {invoice.due_date}")

    async def _invoice(self) -> str | None:
        key = self._next_invoice_key()
        invoice: InvoiceState = await self._act(SalesActivities.invoice_order, InvoiceInput(self._number, key))
        if invoice.invoice_number is None:
            return None  # nothing invoiceable; the key stays free for the next invoice
        self._invoiced(invoice)
        await self._notify("invoice", f"{invoice.invoice_number}:sent",
                           f"{invoice.invoice_number}: {invoice.amount_total} due {invoice.due_date}")
        return invoice.invoice_number

    # --------------------------------------------------------------------------------------- dunning

    def _next_reminder(self) -> datetime | None:
        balance = self._balance
        if balance is None or balance.amount_due <= ZERO or balance.next_due_date is None:
            return None
        due = balance.next_due_date
        sent = self._reminded.get(due, 0)
        schedule = dunning_dates(due)
        return _start_of(schedule[sent]) if sent < len(schedule) else None

    async def _remind(self) -> None:
        """A reminder at each dunning date of the oldest open due date; after the last, collections take over."""
        self._balance = balance = await self._act(SalesActivities.order_balance, QuoteRef(self._number))
        if balance.amount_due <= ZERO or balance.next_due_date is None:
            return
        due = balance.next_due_date
        schedule = dunning_dates(due)
        sent = self._reminded.get(due, 0)
        if sent >= len(schedule) or workflow.now() < _start_of(schedule[sent]):
            return
        self._reminded[due] = sent + 1
        detail = f"{balance.amount_due} overdue since {due}"
        if sent + 1 < len(schedule):
            await self._notify("reminder", f"{self._number}:reminder:{due}:{sent + 1}", detail)
            self._event(f"payment reminder {sent + 1}", "system", detail)
            return
        # The last reminder is the final notice: one message that says collections take over, not two.
        await self._notify("reminder", f"{self._number}:collections:{due}",
                           f"final reminder: {detail}; the account is handed to collections")
        self._event(f"payment reminder {sent + 1}", "system", detail)
        self._event("handed to collections", "system", detail)
        if self._board.lean or workflow.patched(COLLECTIONS_NOTICE_PATCH):
            # The customer and the rep were told; collecting is finance's work, so finance gets it to act on.
            await self._notify("collections", f"{self._number}:collections:{due}:finance",
                               f"{detail}; {len(schedule)} reminders sent, the last on {schedule[-1]}")

    # ---------------------------------------------------------------------------------- cancellation

    async def _cancel_everything(self, cmd: QuoteCommand | None = None) -> None:
        """Stop the shipments not yet shipped, then compensate in one activity: release reservations, cancel
        what is not delivered, credit what was invoiced and not delivered."""
        cmd = cmd or self._cancel or QuoteCommand(Actor("system"), "cancelled")
        reason = cmd.comment or "cancelled"
        if self._amendment_chain is not None:  # its approvers' tasks close with it
            await self._drop_amendment(f"the order is cancelled ({reason})")
        for seq in self._open_shipments():
            try:
                await self._shipments[seq].signal(ShipmentWorkflow.cancel, reason)
            except FailureError:
                pass  # it finished meanwhile: settled below like any other
        await self._wait(lambda: not self._open_shipments())
        # A shipment that shipped before the cancellation reached it left the warehouse: bill it.
        await self._settle_shipments()
        result: CancelOrderResult = await self._act(
            SalesActivities.cancel_order, CancelOrderInput(self._number, cmd.actor.username, reason)
        )
        self._status = OrderStatus.cancelled  # cancel_order wrote it, with the compensation, in one transaction
        self._settling = False
        self._publish()
        detail = (f"released {_q(result.released)}, backorders cancelled {_q(result.backorders_cancelled)}"
                  + (f", credit note {result.credit_note_number} for {result.credit_note_amount}"
                     if result.credit_note_number else "")
                  + (f", {_q(result.shipped_returnable)} shipped may be returned" if result.shipped_returnable
                     else ""))
        self._event("order cancelled", cmd.actor.username, f"{reason}; {detail}")
        self._show("nothing: the order is cancelled", "")

    async def _stop_chain(self, handle: workflow.ChildWorkflowHandle, reason: str) -> None:
        """Cancel a running approval chain through its own signal, so it closes its tasks and says why."""
        if not handle.done():
            try:
                await handle.signal(ApprovalChainWorkflow.cancel, reason)
            except FailureError:
                pass  # it ended meanwhile
        try:
            await handle
        except ChildWorkflowError:
            pass  # whatever the chain's end, the order no longer waits for it

    # ---------------------------------------------------------------------------------------- helpers

    async def _act(self, fn: Callable, arg):
        return await workflow.execute_activity_method(fn, arg, **DB_ACTIVITY)

    async def _wait(self, condition: Callable[[], bool],
                    deadline: Callable[[], datetime | None] | None = None) -> bool:
        """Wait until `condition` holds (True) or the deadline passes (False). The deadline is read again after
        every edit, because an edit can move the validity date."""
        while True:
            if condition():
                return True
            due = deadline() if deadline else None
            if due is not None and workflow.now() >= due:
                return False
            edits = self._edits
            self._board.flush()
            if due is not None and self._request.standing_timers:
                timer = self._standing_timer(due)
                await workflow.wait_condition(lambda: condition() or self._edits != edits or timer.done())
                continue  # the loop's top answers: the condition holds, or the deadline has passed
            try:
                await workflow.wait_condition(
                    lambda: condition() or self._edits != edits,
                    timeout=(due - workflow.now()) if due is not None else None,
                )
            except asyncio.TimeoutError:
                if (deadline() if deadline else None) == due:
                    return condition()

    def _standing_timer(self, due: datetime) -> asyncio.Task:
        """The timer that fires at `due`: the running one when it is for the same deadline, else a new one (the
        old one cancelled). A timer per wait would be started and cancelled around every wait of a phase; this one
        is started once per deadline, and one still running when the order ends is simply dropped with it."""
        if self._timer is not None and not self._timer.done():
            if self._timer_due == due:
                return self._timer
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.create_task(workflow.sleep(due - workflow.now()))
        return self._timer

    async def _set_status(self, status: str, actor: str = "system", reason: str = "") -> None:
        self._becoming = status
        try:
            # The quote is not read back: a status change moves nothing else of it (runs recorded before this got
            # the whole quote back, and take it as they did).
            reloaded: QuoteState | None = await self._act(
                SalesActivities.set_order_status, SetOrderStatusInput(self._number, status, actor, reason, quote=False)
            )
        finally:
            self._becoming = None
        self._quote = reloaded if reloaded is not None else replace(self._quote, status=status)
        self._status = status
        self._publish()

    async def _notify(self, event: str, message_key: str, detail: str = "", also_to: str = "") -> None:
        try:
            await self._act(SalesActivities.notify_order,
                            OrderNotifyInput(self._number, message_key, event, detail, also_to=also_to))
        except ActivityError as err:
            # A message that cannot be written must not stop the order; the timeline says it was not sent.
            self._event(f"{event} notification not sent", "system", str(err.cause or err))

    def _event(self, what: str, actor: str = "system", detail: str = "") -> None:
        self._timeline.append(TimelineEvent(workflow.now(), what, actor, detail))

    def _publish(self) -> None:
        quote = self._quote
        self._board.set(*order_attributes(status=self._status, amount_total=quote.amount_total,
                                          rep=self._request.rep, customer_code=quote.customer_code,
                                          warehouse_code=quote.warehouse_code))

    def _child_attributes(self, updates):
        return starting_attributes(*updates) if self._board.lean else None

    def _show(self, waiting_for: str, group: str) -> None:
        """Operators read this in the Temporal UI: where the order stands and for whom it waits."""
        self._waiting_for = waiting_for
        if group != self._group:  # each upsert is a history event: only when it changes
            self._group = group
            self._board.set(TRADEFLOW_CURRENT_GROUP.value_set(group) if group
                            else TRADEFLOW_CURRENT_GROUP.value_unset())
        quote = self._quote
        lines = [
            f"**Quote {self._number}** for {quote.customer_code}, rep {self._request.rep}, {quote.amount_total}",
            f"Status: {self._status}; waiting for {waiting_for}",
        ]
        if self._shipments:
            lines.append("Shipments: " + ", ".join(
                f"{self._shipment_numbers[s]} ({'open' if not h.done() else 'closed'})"
                for s, h in self._shipments.items()))
        lines += [f"- {e.at:%Y-%m-%d %H:%M} {e.what} ({e.actor})" for e in self._timeline[-5:]]
        workflow.set_current_details("\n".join(lines))

    def _show_fulfilment(self, short: bool) -> None:
        open_shipments = self._open_shipments()
        if open_shipments:
            self._show("the warehouse to ship " + ", ".join(self._shipment_numbers[s] for s in open_shipments),
                       "warehouse")
        elif short:
            self._show("stock for the backorder", "purchasing")
        else:
            due = self._balance.amount_due if self._balance else ZERO
            self._show(f"payment of {due}", "finance")

    # ------------------------------------------------------------------------------------- checks

    def _check_actor(self, actor: Actor, groups: frozenset[str], what: str) -> None:
        if actor.username == self._request.rep or set(actor.groups) & groups:
            return
        raise _refuse(f"{actor.username} may not {what} quote {self._number}", "NotAllowed")

    def _check_status(self, allowed, what: str) -> None:
        if self._quote is None:
            raise _refuse(f"quote {self._number} is still loading; try again", ORDER_STATE_INVALID)
        if self._status not in allowed:
            raise _refuse(f"cannot {what}: quote {self._number} is {self._status}", ORDER_STATE_INVALID)

    def _check_edit(self, cmd: EditQuoteCommand) -> None:
        self._check_status(EDITABLE, "edit")
        self._check_actor(cmd.actor, SALES_OFFICE, "edit")
        if self._editing or self._submit is not None:
            raise _refuse(f"quote {self._number} is being changed right now; reload and try again", STALE_VERSION)
        if cmd.expected_version is not None and cmd.expected_version != self._quote.version:
            raise _refuse(f"quote {self._number} changed since you loaded it (version {cmd.expected_version}, now "
                          f"{self._quote.version}); reload and try again", STALE_VERSION)

    def _check_submit(self, cmd: QuoteCommand) -> None:
        self._check_status({OrderStatus.draft}, "submit")
        self._check_actor(cmd.actor, SALES_OFFICE, "submit")
        if self._submit is not None or self._editing:
            raise _refuse(f"quote {self._number} is already being submitted", ORDER_STATE_INVALID)
        if cmd.expected_version is not None and cmd.expected_version != self._quote.version:
            raise _refuse(f"quote {self._number} changed since you loaded it (version {cmd.expected_version}, now "
                          f"{self._quote.version}); reload and try again", STALE_VERSION)
        if not self._quote.lines:
            raise _refuse("a quote needs at least one line before it is submitted", ORDER_INPUT_INVALID,
                          "lines", "add at least one line before submitting")

    def _check_accept(self, cmd: QuoteCommand) -> None:
        if self._becoming == OrderStatus.sent and self._quote is not None:
            pass  # approved, the row already says sent: accepted, the main loop takes it once the write is done
        else:
            self._check_status({OrderStatus.sent}, "accept")
        self._check_actor(cmd.actor, ACCEPTORS, "accept")
        if self._accept is not None:
            raise _refuse(f"quote {self._number} is already accepted", ORDER_STATE_INVALID)
        if cmd.expected_version is not None and cmd.expected_version != self._quote.version:
            raise _refuse(f"quote {self._number} changed since you loaded it (version {cmd.expected_version}, now "
                          f"{self._quote.version}); reload and try again", STALE_VERSION)

    def _check_backorder_choice(self, cmd: BackorderChoiceCommand) -> None:
        if cmd.choice == CANCEL_REST and self._quote is not None and self._status == OrderStatus.confirmed:
            # A confirmed order waiting for a backorder: the customer may still give up on the rest.
            self._check_actor(cmd.actor, ACCEPTORS, "cancel the backorder of")
            if not self._short:
                raise _refuse(f"quote {self._number} has no backorder to cancel", ORDER_STATE_INVALID)
            if self._cancel_rest is not None or self._answering_rest or self._cancel is not None:
                raise _refuse(f"quote {self._number} is already being changed; reload and try again",
                              ORDER_STATE_INVALID)
            return
        self._check_status({OrderStatus.awaiting_customer}, "choose a backorder option for")
        self._check_actor(cmd.actor, ACCEPTORS, "choose the backorder option of")
        if cmd.choice not in BACKORDER_CHOICES:
            reason = f"unknown backorder choice {cmd.choice!r}; use one of {', '.join(BACKORDER_CHOICES)} " \
                     "(or cancel the order)"
            raise _refuse(reason, ORDER_INPUT_INVALID, "choice", reason)
        if self._backorder_choice is not None:
            raise _refuse("the backorder choice was already made", ORDER_STATE_INVALID)

    def _check_amend(self, cmd: AmendOrderCommand) -> None:
        self._check_status(AMENDABLE, "amend")
        self._check_actor(cmd.actor, SALES_OFFICE, "amend")
        if self._amend is not None or self._cancel is not None or self._cancel_rest is not None:
            raise _refuse(f"order {self._number} is being changed right now; reload and try again", STALE_VERSION)
        pending = self._pending_amendment
        if pending is not None:
            # One amendment at a time: a second one would be judged against lines the first may still change.
            raise _refuse(f"order {self._number} already has an amendment awaiting approval ({pending.summary}, "
                          f"asked by {pending.requested_by}); amend again once the approvers have decided",
                          ORDER_STATE_INVALID)
        if cmd.expected_version is not None and cmd.expected_version != self._quote.version:
            raise _refuse(f"order {self._number} changed since you loaded it (version {cmd.expected_version}, now "
                          f"{self._quote.version}); reload and try again", STALE_VERSION)
        if not cmd.lines:
            raise _refuse("an amended order keeps at least one line (cancel the order instead)", ORDER_INPUT_INVALID,
                          "lines", "keep at least one line, or cancel the order")

    def _check_cancel(self, cmd: QuoteCommand) -> None:
        if self._quote is not None and self._status in ENDED:
            raise _refuse(f"cannot cancel: quote {self._number} is {self._status}", ORDER_STATE_INVALID)
        self._check_actor(cmd.actor, CANCELLERS, "cancel")
        if self._cancel is not None:
            raise _refuse(f"quote {self._number} is already being cancelled", ORDER_STATE_INVALID)

    # ------------------------------------------------------------------------------------- updates

    @workflow.update
    async def edit_quote(self, cmd: EditQuoteCommand) -> QuoteState:
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_edit(cmd)
        self._editing = True
        try:
            self._quote = await self._act(SalesActivities.edit_quote, EditQuoteInput(self._number, cmd))
        except ActivityError as err:
            raise _activity_refusal(err) from err
        finally:
            self._editing = False
        self._edits += 1
        self._event(f"quote edited (version {self._quote.version})", cmd.actor.username,
                    f"{self._quote.amount_total}, valid until {self._quote.valid_until}")
        self._publish()
        return self._quote

    @edit_quote.validator
    def validate_edit_quote(self, cmd: EditQuoteCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_edit(cmd)

    @workflow.update
    async def submit(self, cmd: QuoteCommand) -> str:
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_submit(cmd)
        self._submit = cmd
        await workflow.wait_condition(lambda: self._status != OrderStatus.draft or self._submit is None)
        return self._status

    @submit.validator
    def validate_submit(self, cmd: QuoteCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_submit(cmd)

    @workflow.update
    async def accept(self, cmd: QuoteCommand) -> str:
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_accept(cmd)
        self._accept = cmd
        # Answers once the credit check and the reservation pass have run (confirmation, its invoice and the first
        # shipment included): credit_hold, awaiting_customer or confirmed.
        await workflow.wait_condition(lambda: self._status != OrderStatus.sent and self._becoming != OrderStatus.sent
                                      and not self._settling)
        return self._status

    @accept.validator
    def validate_accept(self, cmd: QuoteCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_accept(cmd)

    @workflow.update
    async def choose_backorder(self, cmd: BackorderChoiceCommand) -> str:
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_backorder_choice(cmd)
        if self._status == OrderStatus.confirmed:  # cancel_rest while a backorder waits
            self._cancel_rest = cmd
            # Answers once the rest is cancelled and what is reserved is in a shipment (or the order ended).
            await workflow.wait_condition(
                lambda: (self._cancel_rest is None and not self._answering_rest) or self._status in ENDED)
            return self._status
        self._backorder_choice = cmd
        await workflow.wait_condition(lambda: self._status != OrderStatus.awaiting_customer and not self._settling)
        return self._status

    @choose_backorder.validator
    def validate_choose_backorder(self, cmd: BackorderChoiceCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_backorder_choice(cmd)

    @workflow.update
    async def cancel(self, cmd: QuoteCommand) -> str:
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_cancel(cmd)
        self._cancel = cmd
        # The order may finish its last step first (e.g. done by a payment in the same moment): say what it is.
        await workflow.wait_condition(lambda: self._status in ENDED)
        return self._status

    @cancel.validator
    def validate_cancel(self, cmd: QuoteCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_cancel(cmd)

    @workflow.update
    async def amend_order(self, cmd: AmendOrderCommand) -> AmendOrderAnswer:
        """Amend a confirmed order (or one waiting for the customer's backorder choice). Answers the order as
        amended once the reservation pass after it has run; refusals (below what shipped or sits in an open
        shipment, over the credit limit, stale version) come back as the activity's ApplicationError. An amendment
        whose prices meet a rule of the quote policy is answered at once with the order as it stands and the
        amendment pending (its ApprovalChain decides; the main loop applies it once approved).
        A brand-new handler needed no workflow.patched: an Update the worker has no handler for is rejected without
        a history event, so no history recorded before it contains this Update. Histories recorded since replay
        through it, and take the approval path only when the activity's recorded result asked for approval."""
        await workflow.wait_condition(lambda: self._quote is not None)
        self._check_amend(cmd)
        self._amend, self._amend_answer = cmd, None
        await workflow.wait_condition(lambda: (self._amend is None and not self._settling)
                                      or self._status in ENDED)
        answer = self._amend_answer
        if isinstance(answer, ApplicationError):
            raise answer
        if answer is None:
            raise _refuse(f"cannot amend: order {self._number} is {self._status}", ORDER_STATE_INVALID)
        return answer

    @amend_order.validator
    def validate_amend_order(self, cmd: AmendOrderCommand) -> None:
        if self._quote is not None:  # before the quote loaded, the handler checks once it has
            self._check_amend(cmd)

    # ------------------------------------------------------------------------------ signals, query

    @workflow.signal
    def payment_received(self, notice: PaymentNotice) -> None:
        self._payments.append(notice)

    @workflow.signal
    def stock_arrived(self) -> None:
        self._stock_arrivals += 1

    @workflow.signal(name=APPROVAL_STATUS_SIGNAL)
    def approval_status(self, notice: ApprovalStatusNotice) -> None:
        # Only the quote chain hands the document back to the rep; the credit chain's notices change nothing. An
        # amendment sent back is not edited and resubmitted: the main loop takes it as rejected (the rep amends again).
        if notice.request_key == f"quote:{self._number}":
            self._approval_notices.append(notice)
        elif (self._pending_amendment is not None and notice.request_key == self._pending_amendment.request_key
              and notice.status == "changes_requested"):
            self._amendment_sent_back = notice.comment or "changes requested"

    @workflow.query
    def view(self) -> OrderView:
        return OrderView(
            quote_number=self._number,
            status=self._status,
            version=self._quote.version if self._quote else 0,
            waiting_for=self._waiting_for,
            timeline=tuple(self._timeline),
            open_shipments=tuple(self._shipment_numbers[s] for s in self._open_shipments()),
            approval_workflow_id=self._approval_wf,
            credit_workflow_id=self._credit_wf,
            pending_amendment=self._pending_amendment,
        )


# ------------------------------------------------------------------------------------------- Shipment


@workflow.defn(name=SHIPMENT_WORKFLOW)
class ShipmentWorkflow:
    """One shipment: the warehouse records picked, packed, shipped (in that order) through the `step` Update;
    "shipped" posts the stock moves (record_shipment_step). The parent may cancel it until it has shipped. If it has
    not shipped by the start of its promised day, the customer and the rep hear of the delay once."""

    @workflow.init
    def __init__(self, request: ShipmentInput) -> None:
        self._state: ShipmentState = request.shipment
        self._cancel_reason: str | None = None
        self._busy = False  # a step is being recorded: a cancellation waits for it
        self._board = SearchAttributeBoard.for_this_run()
        self._quiet_steps = request.quiet_steps

    @workflow.run
    async def run(self, request: ShipmentInput) -> ShipmentResult:
        state = self._state
        self._board.set(*shipment_attributes(state.status))
        self._show()
        delay_at = _start_of(state.promised_date) if state.promised_date else None
        if delay_at is not None:
            try:
                await workflow.wait_condition(self._finished, timeout=max(delay_at - workflow.now(), timedelta(0)))
            except asyncio.TimeoutError:
                await workflow.execute_activity_method(
                    SalesActivities.notify_order,
                    OrderNotifyInput(state.quote_number, f"{state.shipment_number}:delay", "delay",
                                     f"{state.shipment_number} promised for {state.promised_date} has not shipped yet"),
                    **DB_ACTIVITY,
                )
        await workflow.wait_condition(self._finished)
        if self._state.status != ShipmentStatus.shipped:
            self._state = _with_status(self._state, ShipmentStatus.cancelled)
            self._board.set(TRADEFLOW_STATUS.value_set(ShipmentStatus.cancelled.value))
        self._board.set(TRADEFLOW_CURRENT_GROUP.value_unset())
        self._show()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._board.flush()  # nothing is left after that wait; a guard, should a later edit set one late
        shipped = self._state.lines if self._state.status == ShipmentStatus.shipped else ()
        return ShipmentResult(self._state.shipment_number, self._state.status, tuple(shipped))

    def _finished(self) -> bool:
        return self._state.status == ShipmentStatus.shipped or (self._cancel_reason is not None and not self._busy)

    def _show(self) -> None:
        s = self._state
        lines = [f"**{s.shipment_number}** of {s.quote_number}: {s.status}"
                 + (f", promised {s.promised_date}" if s.promised_date else "")]
        lines += [f"- {_q(ln.quantity)} {ln.sku}" for ln in s.lines]
        workflow.set_current_details("\n".join(lines))

    def _check_step(self, cmd: ShipmentStepCommand) -> bool:
        """True when the step is new; False when it was already recorded (repeating it changes nothing)."""
        if not (set(cmd.actor.groups) & WAREHOUSE):
            raise _refuse(f"{cmd.actor.username} is not in the warehouse group", "NotAllowed")
        if cmd.step not in SHIPMENT_STEPS:
            raise _refuse(f"unknown step {cmd.step!r}; use one of {', '.join(SHIPMENT_STEPS)}", "InvalidCommand")
        done = SHIPMENT_STEPS.index(self._state.status) + 1 if self._state.status in SHIPMENT_STEPS else 0
        wanted = SHIPMENT_STEPS.index(cmd.step) + 1
        if wanted <= done:
            return False
        if self._cancel_reason is not None:
            raise _refuse(f"{self._state.shipment_number} is cancelled: {self._cancel_reason}", "ShipmentCancelled")
        if self._busy:
            raise _refuse(f"another step of {self._state.shipment_number} is being recorded; try again",
                          STALE_VERSION)
        if wanted != done + 1:
            raise _refuse(f"{self._state.shipment_number} is {self._state.status}: record "
                          f"{SHIPMENT_STEPS[done]} first", ORDER_STATE_INVALID)
        if cmd.scanned:
            skus = {ln.sku for ln in self._state.lines}
            stray = sorted(set(cmd.scanned) - skus)
            missing = sorted(skus - set(cmd.scanned))
            if stray or missing:
                raise _refuse(
                    "scan does not match the shipment: "
                    + "; ".join(p for p in (f"not in it: {', '.join(stray)}" if stray else "",
                                            f"not scanned: {', '.join(missing)}" if missing else "") if p),
                    "ScanMismatch",
                )
        return True

    @workflow.update
    async def step(self, cmd: ShipmentStepCommand) -> ShipmentState:
        if not self._check_step(cmd):
            return self._state
        self._busy = True
        try:
            self._state = await workflow.execute_activity_method(
                SalesActivities.record_shipment_step,
                RecordShipmentStepInput(self._state.shipment_number, cmd.step, cmd.actor.username, cmd.tracking_ref),
                **DB_ACTIVITY,
            )
        except ActivityError as err:
            raise _activity_refusal(err) from err
        finally:
            self._busy = False
        if not self._quiet_steps or self._state.status == ShipmentStatus.shipped:
            self._board.set(TRADEFLOW_STATUS.value_set(self._state.status),
                            # Shipped: nobody's turn any more, in the same upsert (lean; the run says it again).
                            *([TRADEFLOW_CURRENT_GROUP.value_unset()]
                              if self._board.lean and self._state.status == ShipmentStatus.shipped else []))
        self._show()
        return self._state

    @step.validator
    def validate_step(self, cmd: ShipmentStepCommand) -> None:
        self._check_step(cmd)

    @workflow.signal
    def cancel(self, reason: str) -> None:
        if self._state.status != ShipmentStatus.shipped:
            self._cancel_reason = reason or "cancelled"

    @workflow.query
    def state(self) -> ShipmentState:
        return self._state


def _with_status(state: ShipmentState, status: str) -> ShipmentState:
    return replace(state, status=status)
