"""Payloads that cross the Temporal boundary: frozen dataclasses of stdlib types (Decimal for money and
quantities), carried by the pydantic data converter. Workflow-id helpers live here too."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from workflows.approval_rules import PolicyBody, RequestFacts


@dataclass(frozen=True)
class ReserveStockInput:
    demand_key: str
    product_id: int
    warehouse_id: int
    quantity: Decimal


@dataclass(frozen=True)
class ReserveStockResult:
    demand_key: str
    requested: Decimal
    reserved: Decimal
    newly_reserved: Decimal
    shortfall: Decimal


@dataclass(frozen=True)
class ReleaseReservationInput:
    demand_key: str
    quantity: Decimal | None = None  # None releases all of it


@dataclass(frozen=True)
class ReleaseReservationResult:
    demand_key: str
    released: Decimal


@dataclass(frozen=True)
class PostStockMoveInput:
    key: str
    product_id: int
    quantity: Decimal
    source_location_id: int
    dest_location_id: int
    unit_cost: Decimal | None = None
    demand_key: str | None = None
    move_date: date | None = None
    customer_id: int | None = None
    supplier_id: int | None = None


@dataclass(frozen=True)
class PostStockMoveResult:
    move_id: int
    key: str
    kind: str
    value: Decimal
    journal_entry_id: int | None
    already_posted: bool


def q2c_id(quote_number: str) -> str:
    return f"q2c:{quote_number}"


def p2p_id(order_number: str) -> str:
    return f"p2p:{order_number}"


def rma_id(rma_number: str) -> str:
    return f"rma:{rma_number}"


# ------------------------------------------------------------------------------------------- approvals
# The policy body types live in workflows/approval_rules.py (pure data + evaluation).

APPROVAL_CHAIN_WORKFLOW = "ApprovalChain"


def approval_id(request_key: str) -> str:
    """Workflow id of a standalone approval chain, e.g. approval:quote:Q-000123."""
    return f"approval:{request_key}"


class ApprovalOutcome(StrEnum):
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


@dataclass(frozen=True)
class ApprovalChainInput:
    request_key: str  # business key, e.g. "quote:Q-000123"
    kind: str  # DocumentKind value
    document_ref: str  # e.g. "Q-000123"
    title: str
    requester: str
    facts: RequestFacts
    details: dict  # what the approver sees: lines, prices, exposure ... (display only)
    branch: str = ""
    priority: int = 50
    # How long the requester may take to resubmit after "request changes" before the request is cancelled.
    resubmit_within_hours: int = 14 * 24
    # A kind judged by another kind's policy names it here (an amendment of an order: the quote policy), with the
    # rules of it that the request met; empty: the kind's own policy, all of its rules.
    policy_kind: str = ""
    rule_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadPolicyInput:
    kind: str
    as_of: date


@dataclass(frozen=True)
class PinnedPolicy:
    kind: str
    version: int
    sha256: str
    body: PolicyBody


@dataclass(frozen=True)
class Actor:
    """Who acts, as the web session established it (never taken from a form)."""

    username: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.groups


@dataclass(frozen=True)
class TaskCommand:
    """Claim, release, resolve (a delegate hands back) — and the base of the other task updates."""

    task_key: str
    actor: Actor
    expected_version: int | None = None  # optimistic concurrency: refuse if the task moved on
    comment: str = ""


@dataclass(frozen=True)
class DecideCommand:
    task_key: str
    actor: Actor
    outcome: str  # TaskOutcome value: approved, rejected, changes_requested
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class DelegateCommand:
    task_key: str
    actor: Actor
    to_user: str
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class ForwardCommand:
    task_key: str
    actor: Actor
    to_groups: tuple[str, ...] = ()
    to_users: tuple[str, ...] = ()
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class ResubmitCommand:
    actor: Actor
    comment: str = ""
    facts: RequestFacts | None = None  # changed facts, when the requester edited the request


@dataclass(frozen=True)
class TaskView:
    """A task as it stands right after an update: the inbox row already says the same."""

    task_key: str
    status: str
    outcome: str | None
    assignee: str | None
    owner: str | None
    delegation_state: str
    candidate_groups: tuple[str, ...]
    candidate_users: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class DecisionRecord:
    task_key: str
    step_name: str
    rule_ids: tuple[str, ...]
    outcome: str  # approved, rejected, changes_requested, expired, skipped, cancelled
    actor: str | None
    acting_for: str | None
    comment: str
    at: datetime


@dataclass(frozen=True)
class ApprovalResult:
    request_key: str
    outcome: str  # ApprovalOutcome value
    policy_version: int | None
    decisions: tuple[DecisionRecord, ...]


@dataclass(frozen=True)
class ChainStatus:
    """The Query answer for the task page and operators: where the chain stands."""

    request_key: str
    status: str  # RequestStatus value
    policy_version: int | None
    current_step: int
    open_tasks: tuple[TaskView, ...]
    decisions: tuple[DecisionRecord, ...]


@dataclass(frozen=True)
class ApprovalStatusNotice:
    """Signal `approval_status` from a child ApprovalChain to its parent process when the request changes hands:
    "changes_requested" (back to the requester, who may now edit the document) and "pending" (resubmitted).
    A workflow cannot query its child, so the chain tells it."""

    request_key: str
    status: str
    comment: str = ""


APPROVAL_STATUS_SIGNAL = "approval_status"


# Activity payloads of the approval chain


@dataclass(frozen=True)
class RegisterRequestInput:
    request_key: str
    workflow_id: str
    kind: str
    document_ref: str
    title: str
    requester: str
    branch: str
    amount: str  # Decimal as text: the row keeps the exact value
    facts: dict
    details: dict
    policy_version: int | None


@dataclass(frozen=True)
class TaskSnapshot:
    """The whole state of one task as the workflow holds it; the row takes it if `version` is newer."""

    task_key: str
    request_key: str
    workflow_id: str
    step_index: int
    round: int
    step_name: str
    kind: str
    title: str
    document_ref: str
    requester: str
    branch: str
    amount: str
    status: str
    outcome: str | None
    assignee: str | None
    owner: str | None
    delegation_state: str
    priority: int
    created_at: datetime
    follow_up_at: datetime | None
    escalate_at: datetime | None
    due_at: datetime | None
    escalation_level: int
    completed_at: datetime | None
    completed_by: str | None
    acting_for: str | None
    comment: str
    policy_kind: str
    policy_version: int | None
    rule_ids: tuple[str, ...]
    candidate_groups: tuple[str, ...]
    candidate_users: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class SaveTaskInput:
    task: TaskSnapshot
    action: str  # what happened, for the audit trail: created, claimed, approved, escalated ...
    actor: str  # a username, or "system" for timers
    acting_for: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ResolveCandidatesInput:
    candidate_users: tuple[str, ...]
    candidate_groups: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class ResolvedCandidates:
    """Explicit candidate users plus the substitutes of anyone out of office who would receive the task."""

    candidate_users: tuple[str, ...]
    substitutes: tuple[str, ...] = ()
    # (substitute, the person away they stand in for): a substitute's decision is recorded as acting for them.
    covers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NotifyInput:
    message_key: str  # idempotency: one message per key and recipient
    subject: str
    body: str
    task_key: str | None = None
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FinishRequestInput:
    request_key: str
    status: str  # RequestStatus value
    actor: str = "system"
    reason: str = ""
    policy_version: int | None = None
    at: datetime | None = None
    facts: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- quote to cash
# One QuoteToCash workflow per quote (id q2c:<quote number>); each shipment is a child Shipment workflow
# (id shp:<quote number>-<seq>). The quote and order rows live in models/sales.py; the workflow owns the process
# state and asks activities (activities/sales.py) to write what reflects it, each idempotent by a natural key.

QUOTE_TO_CASH_WORKFLOW = "QuoteToCash"
SHIPMENT_WORKFLOW = "Shipment"


def shipment_id(quote_number: str, seq: int) -> str:
    return f"shp:{quote_number}-{seq}"


class OrderStatus(StrEnum):
    """sales_order.status, and the TradeflowStatus search attribute of a QuoteToCash workflow."""

    draft = "draft"                          # rep edits the quote
    pending_approval = "pending_approval"    # an ApprovalChain runs (discount / margin / amount)
    changes_requested = "changes_requested"  # an approver sent it back; the rep edits and resubmits
    sent = "sent"                            # approved (or no approval needed); waits for the customer
    credit_hold = "credit_hold"              # accepted, exposure over the limit; credit controllers decide
    awaiting_customer = "awaiting_customer"  # shortage and backorder preference "ask": the customer decides
    confirmed = "confirmed"                  # reserved, fulfilment under way (shipments, backorders)
    delivered = "delivered"                  # everything shipped; invoicing / payment outstanding
    done = "done"                            # fully delivered, invoiced and paid
    rejected = "rejected"                    # approval rejected
    expired = "expired"                      # validity date passed before acceptance
    cancelled = "cancelled"                  # cancelled (with compensation when it had gone further)


class ShipmentStatus(StrEnum):
    pending = "pending"
    picked = "picked"
    packed = "packed"
    shipped = "shipped"
    cancelled = "cancelled"


@dataclass(frozen=True)
class QuoteLineInput:
    """A quote line as a rep or channel enters it. Unit price is computed from the pricelist unless given."""

    sku: str
    quantity: Decimal
    discount_percent: Decimal = Decimal(0)  # line discount on top of the pricelist price
    unit_price: Decimal | None = None       # manual price override (routes to approval when it cuts margin)
    drop_ship: bool = False


@dataclass(frozen=True)
class QuoteToCashInput:
    quote_number: str   # the quote row exists (models/sales.create_quote) before the workflow starts
    rep: str            # username of the sales rep (the approval requester)
    # Consecutive waits on one deadline share one timer (the validity date over approval and acceptance, the next
    # reminder over fulfilment and payment) instead of a timer per wait. Starters set it; runs recorded before it
    # existed (their input has no such field) keep a timer per wait, as their histories say.
    standing_timers: bool = False


@dataclass(frozen=True)
class EditQuoteCommand:
    actor: Actor
    lines: tuple[QuoteLineInput, ...] | None = None  # None keeps the lines
    order_discount_percent: Decimal | None = None
    valid_until: date | None = None
    customer_ref: str | None = None
    backorder_preference: str | None = None  # BackorderPreference value
    expected_version: int | None = None


@dataclass(frozen=True)
class QuoteCommand:
    """Submit (for approval / sending), accept (customer acceptance), cancel (with compensation)."""

    actor: Actor
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class BackorderChoiceCommand:
    actor: Actor
    # ship_available or ship_complete (BackorderPreference values), or cancel_rest: ship what is reserved and
    # cancel the backordered quantities (also while a confirmed order waits for a backorder).
    choice: str


@dataclass(frozen=True)
class PaymentNotice:
    """Signal to a QuoteToCash workflow after finance recorded a payment of its customer (rows already written)."""

    payment_reference: str
    customer_id: int
    amount: Decimal


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    what: str       # e.g. "quote created", "approval requested", "credit hold", "shipment 1 shipped"
    actor: str = "system"
    detail: str = ""


@dataclass(frozen=True)
class OrderView:
    """Query answer of a QuoteToCash workflow: the order page's timeline and where it waits."""

    quote_number: str
    status: str
    version: int
    waiting_for: str      # human-readable: "approval by sales-managers", "customer acceptance", ...
    timeline: tuple[TimelineEvent, ...]
    open_shipments: tuple[str, ...]
    approval_workflow_id: str | None = None
    credit_workflow_id: str | None = None
    pending_amendment: PendingAmendment | None = None  # an amendment that waits for its approval chain


# Activity payloads of quote to cash

@dataclass(frozen=True)
class QuoteRef:
    quote_number: str


@dataclass(frozen=True)
class QuoteLineState:
    line_id: int
    line_no: int
    product_id: int
    sku: str
    quantity: Decimal
    unit_price: Decimal
    subtotal: Decimal
    drop_ship: bool
    qty_reserved: Decimal
    qty_delivered: Decimal
    qty_invoiced: Decimal
    qty_cancelled: Decimal
    invoice_policy: str  # InvoicePolicy value


@dataclass(frozen=True)
class QuoteState:
    """The quote/order row as activities report it to the workflow."""

    quote_number: str
    order_id: int
    customer_id: int
    customer_code: str
    customer_segment: str
    branch: str
    warehouse_id: int
    status: str
    valid_until: date
    backorder_preference: str
    amount_untaxed: Decimal
    amount_total: Decimal
    discount_percent: Decimal  # effective discount against list prices
    margin_percent: Decimal
    categories: tuple[str, ...]
    lines: tuple[QuoteLineState, ...]
    version: int
    # Last, with defaults: payloads written before they existed (saved histories, running workflows) still decode.
    warehouse_code: str = ""
    # The rep's discount off the customer's pricelist prices (rules.concession_percent): what approval routes on.
    # None in payloads from before it existed: the facts then fall back to discount_percent, as they were.
    concession_percent: Decimal | None = None
    customer_name: str = ""  # for titles people read ("Quote Q-000123 for Elektro Nord GmbH")


@dataclass(frozen=True)
class EditQuoteInput:
    quote_number: str
    command: EditQuoteCommand


@dataclass(frozen=True)
class SetOrderStatusInput:
    quote_number: str
    status: str
    actor: str = "system"
    reason: str = ""
    # False: the caller holds the quote already (a status change moves nothing else of it), so the activity
    # returns None instead of reading the customer and the lines again.
    quote: bool = True


@dataclass(frozen=True)
class CreditCheckResult:
    customer_id: int
    posted_receivable: Decimal
    uninvoiced_orders: Decimal  # confirmed orders not yet invoiced, this order excluded
    this_order: Decimal
    exposure: Decimal
    limit: Decimal
    over_limit: bool


@dataclass(frozen=True)
class ReserveOrderResult:
    """Per line: what is reserved now and what is short (drop-ship lines are not reserved)."""

    lines: tuple[QuoteLineState, ...]
    fully_reserved: bool
    shortfall: Decimal


@dataclass(frozen=True)
class CreateShipmentInput:
    quote_number: str
    seq: int


@dataclass(frozen=True)
class ShipmentLineState:
    order_line_id: int
    product_id: int
    sku: str
    quantity: Decimal


@dataclass(frozen=True)
class ShipmentState:
    shipment_number: str   # SHP-<quote number>-<seq>
    quote_number: str
    seq: int
    status: str            # ShipmentStatus value
    promised_date: date | None
    drop_ship: bool
    lines: tuple[ShipmentLineState, ...]


@dataclass(frozen=True)
class ShipmentInput:
    shipment: ShipmentState
    # Picked and packed show in the shipment's current details (and on the order's pages), not in its search
    # attributes: TradeflowStatus says pending until it is shipped or cancelled (two upserts fewer per shipment,
    # each a history event and a visibility write). Shipments started before this field existed upsert every step.
    quiet_steps: bool = False


@dataclass(frozen=True)
class ShipmentStepCommand:
    """Pick, pack or ship recorded by the warehouse; `scanned` is a barcode or SKU per line, for checking."""

    actor: Actor
    step: str  # picked, packed, shipped
    scanned: tuple[str, ...] = ()
    tracking_ref: str = ""


@dataclass(frozen=True)
class ShipmentResult:
    shipment_number: str
    status: str
    shipped: tuple[ShipmentLineState, ...]


@dataclass(frozen=True)
class RecordShipmentStepInput:
    shipment_number: str
    step: str
    actor: str
    tracking_ref: str = ""


@dataclass(frozen=True)
class InvoiceInput:
    quote_number: str
    key: str  # idempotency: e.g. "Q-000123/inv/1"; a retried activity finds the invoice it wrote


@dataclass(frozen=True)
class InvoiceState:
    invoice_number: str | None  # None when there was nothing to invoice
    amount_total: Decimal
    due_date: date | None
    journal_entry_id: int | None


@dataclass(frozen=True)
class OrderBalance:
    """What is left of an order: drives completion and dunning."""

    quote_number: str
    fully_delivered: bool
    fully_invoiced: bool
    amount_invoiced: Decimal
    amount_paid: Decimal
    amount_due: Decimal
    next_due_date: date | None


@dataclass(frozen=True)
class CancelOrderInput:
    quote_number: str
    actor: str
    reason: str


@dataclass(frozen=True)
class CancelOrderResult:
    released: Decimal           # reserved quantity released
    backorders_cancelled: Decimal
    credit_note_number: str | None
    credit_note_amount: Decimal
    shipped_returnable: Decimal  # shipped quantity a return may be offered for


@dataclass(frozen=True)
class CancelBackorderInput:
    quote_number: str
    actor: str
    key: str  # idempotency: e.g. "Q-000123/cancel-rest/1"; also the key of its credit note, if one is needed


@dataclass(frozen=True)
class CancelBackorderResult:
    """What a cancel_rest choice did: backordered quantities cancelled (nothing reserved is touched), and the
    credit for what of them was invoiced ahead of delivery (ordered invoice policy)."""

    cancelled: Decimal
    credit_note_number: str | None
    credit_note_amount: Decimal
    lines: tuple[QuoteLineState, ...]


@dataclass(frozen=True)
class OrderNotifyInput:
    quote_number: str
    message_key: str   # idempotent: one message per key
    # confirmation, hold, shipment, delay, invoice, reminder (to customer and rep); collections (to finance)
    event: str
    detail: str = ""
    # A rep notice (amendment not applied) also goes to this user when they asked and are not the rep.
    also_to: str = ""


# Folded steps (patch "q2c-folded-steps" in workflows/quote_to_cash.py): one activity, one transaction, where the
# workflow used to run several in a row with nothing to decide between them.

@dataclass(frozen=True)
class AcceptOrderResult:
    """The credit check, and the reservation made in the same transaction when the order is within the limit
    (None when it is over: a held order reserves nothing until it is released)."""

    credit: CreditCheckResult
    reserved: ReserveOrderResult | None


@dataclass(frozen=True)
class ConfirmOrderInput:
    quote_number: str
    actor: str
    reason: str
    invoice_key: str | None = None  # invoice the ordered-policy lines under this key (None: nothing to invoice yet)


@dataclass(frozen=True)
class ConfirmOrderResult:
    invoice: InvoiceState  # invoice_number None when nothing was invoiced
    balance: OrderBalance


@dataclass(frozen=True)
class SettleOrderInput:
    """Settle the order after shipments finished or money came in: queue `notices`, invoice what shipped when
    `invoice_key` is given, read the balance; when `close` (no shipment open) and everything is delivered, invoice
    any rest (under `rest_invoice_key`), move confirmed -> delivered and, once paid, -> done."""

    quote_number: str
    notices: tuple[OrderNotifyInput, ...] = ()
    invoice_key: str | None = None
    rest_invoice_key: str | None = None
    close: bool = False


@dataclass(frozen=True)
class SettleOrderResult:
    invoices: tuple[InvoiceState, ...]  # the invoices written by this call, in order
    balance: OrderBalance
    status: str  # the order's status after the call


# Amending a confirmed order (issue 4): the QuoteToCash Update amend_order and its activity.

@dataclass(frozen=True)
class AmendOrderCommand:
    """Change a confirmed (or awaiting_customer) order before the changed quantities ship: `lines` is the full new
    set, as in EditQuoteCommand (lines matched to the order's by SKU and drop-ship, in order; a line left out is
    removed; a new one is added). Raising or adding a line is priced by the pricelist and credit-checked."""

    actor: Actor
    lines: tuple[QuoteLineInput, ...]
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class AmendOrderInput:
    quote_number: str
    command: AmendOrderCommand
    key: str  # idempotency: "<quote>/amend/<n>"; also the key of its credit note, if one is needed
    invoice_key: str | None = None  # invoice ordered-policy increases under this key (None: invoice nothing)
    # The approval request that approved this amendment ("amendment:<quote>:<n>") and who approved it: the quote
    # policy's price rules are not asked again (None: they are, and a hit sends the amendment to approval).
    approval_key: str | None = None
    approved_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class AmendOrderResult:
    version: int                      # the order's version after the amendment
    summary: str                      # what changed, as people read it ("LAMP-200 25 → 20; + 5 CAB-100")
    amount_total: Decimal             # the order's new total
    released: Decimal                 # reservation given back by the lowered lines
    credit_note_number: str | None    # credit for ordered-policy units invoiced beyond the new quantity
    credit_note_amount: Decimal
    invoice: InvoiceState             # ordered-policy increase invoiced (invoice_number None: nothing)
    reserved: ReserveOrderResult      # the reservation pass run after the amendment
    quote: QuoteState
    # Set when the only obstacle was the quote approval policy: nothing was written (the fields above describe the
    # order as it stands, no reservation pass ran), and the workflow asks the policy's approvers.
    approval_needed: AmendmentApproval | None = None


AMENDMENT_KIND = "amendment"  # ApprovalChainInput.kind of an amendment; routed by the quote policy


def amendment_request_key(quote_number: str, n: int) -> str:
    """The approval request of the order's n-th amendment (its amend key is "<quote>/amend/<n>")."""
    return f"{AMENDMENT_KIND}:{quote_number}:{n}"


@dataclass(frozen=True)
class AmendedLine:
    """One line an amendment changes, before → after, as the approver reads it (a new line has no price before)."""

    line_no: int
    sku: str
    quantity_before: Decimal  # ordered − cancelled; 0 for a new line
    quantity: Decimal
    unit_price_before: Decimal | None
    unit_price: Decimal
    discount_percent_before: Decimal | None
    discount_percent: Decimal
    subtotal: Decimal  # the line's new net amount


@dataclass(frozen=True)
class AmendmentApproval:
    """What amend_order found when an amendment, valid in every other respect, meets a price rule of the quote
    approval policy in force: the rules (to route the chain by), the amended order's facts as the policy judged
    them, and what would change."""

    policy_version: int
    rule_ids: tuple[str, ...]
    reason: str  # the rules met, as people read them ("... asks for approval when discount % > 10 (...)")
    summary: str  # what changes, as the timeline says it ("LAMP-200 price 45.00 → 40.00")
    facts: RequestFacts
    lines: tuple[AmendedLine, ...]
    amount_total_before: Decimal
    amount_total: Decimal


@dataclass(frozen=True)
class PendingAmendment:
    """An amendment waiting for its ApprovalChain: nothing of it is written until approved, and the order runs on
    its old lines meanwhile. Approved, it is applied as asked (under `key`); rejected, it is dropped."""

    request_key: str  # "amendment:<quote>:<n>"
    approval_workflow_id: str
    key: str  # the amend key it is applied under once approved: "<quote>/amend/<n>"
    command: AmendOrderCommand  # as the rep sent it; requested by command.actor
    version: int  # the order's version it amends: applied only to that version
    requested_at: datetime
    reason: str
    summary: str
    amount_total_before: Decimal
    amount_total: Decimal
    lines: tuple[AmendedLine, ...]

    @property
    def requested_by(self) -> str:
        return self.command.actor.username


@dataclass(frozen=True)
class AmendOrderAnswer(QuoteState):
    """The amend_order Update's answer: the order (amended; or as it stands while `pending_amendment` waits for
    approval, which is not a refusal)."""

    pending_amendment: PendingAmendment | None = None

    @classmethod
    def of(cls, quote: QuoteState, pending: PendingAmendment | None = None) -> AmendOrderAnswer:
        return cls(**{f.name: getattr(quote, f.name) for f in fields(QuoteState)}, pending_amendment=pending)
