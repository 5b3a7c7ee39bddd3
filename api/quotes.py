"""Quotes and orders as JSON (/api/v1/quotes ...), payments (/api/v1/payments) and shipment steps
(/api/v1/shipments/{number}/steps); and the service every quote action goes through, from this API and from the
pages (api/order_pages.py) alike.

- Creating a quote writes its rows (models.orders.create_quote, one transaction, committed) and then starts its
  QuoteToCash workflow (id q2c:<number>, reject-duplicate). The Temporal client is obtained first, so an
  unreachable engine is a 503 before anything is written; if the start itself fails the rows are removed again.
- Every other action on a quote is a Temporal Update of its workflow (edit_quote, submit, accept, cancel,
  choose_backorder) whose validator accepts or refuses at once. The actor comes from the session, never from the
  body. A refusal keeps its type (X-Refusal-Reason) and becomes 409 (conflict with the order's state), 422 (a bad
  command) or 403; an unreachable engine is a 503 with a clear message, never a 500.
- After a rep edits a quote an approver sent back ("changes requested"), the API sends the approval chain its
  `resubmit` Update with the new facts (api.inbox.resubmit, the inbox's own code).
- Payments are written first (models.orders.record_payment, idempotent by reference) and then signalled to the
  QuoteToCash workflows they concern (payment_received, `tell_payments`, which the bank statement import in
  api/routes/imports.py calls too); a workflow that cannot be told is listed in the answer.
- A shipment step repeated after its Shipment workflow ended (it ends once shipped) answers with the shipment as it
  stands, like a repeat the running workflow answers; the engine's RPC failures (unreachable, busy, a workflow whose
  task keeps failing) are 503s that say to try again, never 500s.
- A customer's contact (models/portal.py ContactViewer) reads only their customer's quotes, in the shapes of
  api/portal.py, and gives the customer's answers (accept, backorder choice, cancel) as Actor(<username>,
  ("customer",)); every other route here refuses them.

Reads (list, detail) come from the tables (models/order_views.py); the detail adds the workflow's view() query for
the timeline when the engine answers. Database transactions end before any Temporal call: on SQLite a transaction
holds the write lock (BEGIN IMMEDIATE) the workflow's activities need.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import inbox as inbox_api
from api import portal as contact_api
from api.audit import audit
from api.deps import AnyUser, CsrfProtected, SessionDep, SettingsDep, current_roles, require_roles
from api.health import get_temporal_client
from api.inbox import Refusal
from models import inbox as inbox_model
from models import order_views as views
from models import orders
from models.masterdata import Customer, Product
from models.portal import CUSTOMER_ACTIONS, CUSTOMER_CANCELLABLE, ContactViewer
from models.sales import CustomerInvoice, CustomerPayment, SalesOrder, SalesOrderLine
from models.users import CUSTOMER_ROLE, User
from workflows.contracts import (
    QUOTE_TO_CASH_WORKFLOW,
    Actor,
    AmendOrderAnswer,
    AmendOrderCommand,
    BackorderChoiceCommand,
    EditQuoteCommand,
    OrderView,
    PaymentNotice,
    PendingAmendment,
    QuoteCommand,
    QuoteLineInput,
    QuoteState,
    QuoteToCashInput,
    ShipmentLineState,
    ShipmentResult,
    ShipmentState,
    ShipmentStatus,
    ShipmentStepCommand,
    q2c_id,
    shipment_id,
)
from workflows.quote_to_cash import quote_facts
from workflows.search_attributes import new_order_attributes

router = APIRouter(prefix="/api/v1", tags=["quotes"], dependencies=[CsrfProtected])

# How long an action may wait for the workflow's answer (a validator answers in milliseconds; a missing worker
# never answers), and how long the detail page waits for the timeline query before showing the page without it.
UPDATE_TIMEOUT_SECONDS = 20.0
QUERY_TIMEOUT_SECONDS = 3.0
START_TIMEOUT_SECONDS = 10.0
MAX_LINES = 200

# Update, signal and query names of the QuoteToCash and Shipment workflows (workflows/quote_to_cash.py). Named
# here rather than imported as methods so the API does not import workflow code.
UPDATE_EDIT = "edit_quote"
UPDATE_SUBMIT = "submit"
UPDATE_ACCEPT = "accept"
UPDATE_CANCEL = "cancel"
UPDATE_BACKORDER = "choose_backorder"
UPDATE_AMEND = "amend_order"
SIGNAL_PAYMENT = "payment_received"
QUERY_VIEW = "view"
UPDATE_SHIPMENT_STEP = "step"

SALES = ("sales", "sales-manager")
SalesUser = Annotated[User, Depends(require_roles(*SALES))]
# Reading quotes: staff see what their roles allow (viewer_of); a customer contact sees their customer's only.
QuoteReader = AnyUser
# The customer's answers (accept, backorder choice, cancel): reps and managers record them, contacts give them.
CustomerOrSales = Annotated[User, Depends(require_roles(*SALES, contacts=True))]
FinanceUser = Annotated[User, Depends(require_roles("finance"))]
WarehouseUser = Annotated[User, Depends(require_roles("warehouse"))]

# ApplicationError types the workflows and activities raise -> HTTP status; any other refusal is a 409.
REFUSAL_STATUS: dict[str, int] = {
    "NotAllowed": status.HTTP_403_FORBIDDEN,
    "SegregationOfDuties": status.HTTP_403_FORBIDDEN,
    "NotVisible": status.HTTP_404_NOT_FOUND,
    "OrderNotFound": status.HTTP_404_NOT_FOUND,
    "OrderInputError": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "OrderInputInvalid": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "InvalidCommand": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "InvalidQuote": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "InvalidChoice": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "InvalidStep": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "ScanMismatch": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "CommentRequired": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "Unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
}
REFUSAL_HEADER = inbox_api.REFUSAL_HEADER
PROCESS_ENDED = "ProcessEnded"

ClientSource = Callable[[], Awaitable[Client]]


# ------------------------------------------------------------------------------------------- API models

Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=7, decimal_places=3)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=13, decimal_places=3)]
Comment = Annotated[str, Field(max_length=2000)]
Channel = Literal["web", "api", "edi", "ecommerce"]
Preference = Literal["ship_available", "ship_complete", "ask"]


class QuoteLineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=40)
    quantity: Quantity
    discount_percent: Percent = Decimal(0)
    unit_price: Money | None = Field(None, description="manual price; omitted: the customer's pricelist decides")
    drop_ship: bool = False

    def contract(self) -> QuoteLineInput:
        return QuoteLineInput(sku=self.sku.strip(), quantity=self.quantity, discount_percent=self.discount_percent,
                              unit_price=self.unit_price, drop_ship=self.drop_ship)


class QuoteCreateIn(BaseModel):
    customer_code: str = Field(min_length=1, max_length=20)
    customer_ref: str | None = Field(None, max_length=60, description="the customer's reference; unique per customer")
    channel: Channel = "web"
    lines: list[QuoteLineIn] = Field(min_length=1, max_length=MAX_LINES)
    valid_until: date | None = Field(None, description="default: 30 days from today")
    order_discount_percent: Percent = Decimal(0)
    backorder_preference: Preference | None = Field(None, description="default: the customer's")
    warehouse_code: str | None = Field(None, max_length=10)
    note: str = Field("", max_length=1000)


class QuotePatchIn(BaseModel):
    lines: list[QuoteLineIn] | None = Field(None, min_length=1, max_length=MAX_LINES,
                                            description="the new lines, all of them; omitted: unchanged")
    order_discount_percent: Percent | None = None
    valid_until: date | None = None
    customer_ref: str | None = Field(None, max_length=60)
    backorder_preference: Preference | None = None
    expected_version: int | None = Field(None, ge=1, description="refuse (409) if the quote changed since")
    comment: Comment = Field("", description="for the approver, when the edit answers their request for changes")


class QuoteAmendIn(BaseModel):
    """The PATCH shape, for a confirmed order: the full new set of lines (a line left out is removed)."""

    lines: list[QuoteLineIn] = Field(min_length=1, max_length=MAX_LINES,
                                     description="the order's new lines, all of them, matched by SKU")
    expected_version: int | None = Field(None, ge=1, description="refuse (409) if the order changed since")
    comment: Comment = Field("", description="why, for the timeline and the audit trail")


class QuoteActionIn(BaseModel):
    comment: Comment = ""
    expected_version: int | None = Field(None, ge=1)


class BackorderChoiceIn(BaseModel):
    choice: Literal["ship_available", "ship_complete", "cancel_rest"] = Field(
        description="when the customer is asked: ship what is there and backorder the rest, wait and ship complete, "
                    "or ship what is there and cancel the rest; while a confirmed order waits for stock: cancel_rest "
                    "drops what is still missing")


class PaymentIn(BaseModel):
    reference: str = Field(min_length=1, max_length=60, description="bank reference: a repeat is harmless")
    customer_code: str = Field(min_length=1, max_length=20)
    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    payment_date: date
    invoice_number: str | None = Field(None, max_length=20, description="omitted: the oldest open invoices")


class ShipmentStepIn(BaseModel):
    step: Literal["picked", "packed", "shipped"]
    scanned: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=500,
        description="barcodes or SKUs scanned; required for picked (every line), checked against the lines")
    tracking_ref: str = Field("", max_length=60)


class LineOut(BaseModel):
    line_no: int
    sku: str
    description: str
    uom: str
    quantity: Decimal
    list_price: Decimal
    unit_price: Decimal
    manual_price: bool
    discount_percent: Decimal
    unit_cost: Decimal
    tax_rate: Decimal
    subtotal: Decimal
    tax_amount: Decimal
    drop_ship: bool
    promised_date: date | None
    qty_reserved: Decimal
    qty_delivered: Decimal
    qty_invoiced: Decimal
    qty_cancelled: Decimal
    removed: bool = Field(False, description="taken off the order by an amendment (kept at quantity 0, because "
                                             "shipments and invoices refer to it); not part of the totals")
    removed_on: date | None = None
    removed_by: str | None = None


class ShipmentLineOut(BaseModel):
    line_no: int
    sku: str
    barcode: str | None
    description: str
    quantity: Decimal


class ShipmentOut(BaseModel):
    number: str
    seq: int
    status: str
    drop_ship: bool
    promised_date: date | None
    tracking_ref: str
    shipped_at: datetime | None
    lines: list[ShipmentLineOut]


class InvoiceOut(BaseModel):
    number: str
    kind: str
    invoice_date: date
    due_date: date
    amount_untaxed: Decimal
    amount_tax: Decimal
    amount_total: Decimal
    amount_residual: Decimal
    status: str


class PaymentOut(BaseModel):
    reference: str
    amount: Decimal
    payment_date: date
    invoice_number: str | None
    recorded_by: str


class TaskOut(BaseModel):
    task_key: str
    request_key: str
    step_name: str
    status: str
    outcome: str | None
    assignee: str | None
    candidate_groups: list[str]
    due_at: datetime | None
    url: str


class CreditOut(BaseModel):
    limit: Decimal
    posted_receivable: Decimal
    uninvoiced_orders: Decimal
    this_order: Decimal
    exposure: Decimal
    headroom: Decimal
    over_limit: bool


class TimelineEventOut(BaseModel):
    at: datetime
    what: str
    actor: str
    detail: str


class AmendedLineOut(BaseModel):
    line_no: int
    sku: str
    quantity_before: Decimal
    quantity: Decimal
    unit_price_before: Decimal | None = Field(description="null for a new line")
    unit_price: Decimal
    discount_percent_before: Decimal | None
    discount_percent: Decimal
    subtotal: Decimal


class PendingAmendmentOut(BaseModel):
    """An amendment waiting for approval: nothing of it applies until the approvers agree."""

    request_key: str
    approval_workflow_id: str
    requested_by: str
    requested_at: datetime
    comment: str
    reason: str = Field(description="the rules of the quote approval policy the amended prices meet")
    summary: str = Field(description="what would change")
    amount_total_before: Decimal
    amount_total: Decimal = Field(description="the order's total once applied")
    lines: list[AmendedLineOut]

    @classmethod
    def of(cls, p: PendingAmendment) -> PendingAmendmentOut:
        return cls(request_key=p.request_key, approval_workflow_id=p.approval_workflow_id,
                   requested_by=p.requested_by, requested_at=p.requested_at, comment=p.command.comment,
                   reason=p.reason, summary=p.summary, amount_total_before=p.amount_total_before,
                   amount_total=p.amount_total,
                   lines=[AmendedLineOut(**{name: getattr(ln, name) for name in AmendedLineOut.model_fields})
                          for ln in p.lines])


class QuoteSummary(BaseModel):
    number: str
    status: str
    customer_code: str
    customer_name: str
    customer_ref: str | None
    channel: str
    rep: str
    quote_date: date
    valid_until: date
    amount_untaxed: Decimal
    amount_total: Decimal
    discount_percent: Decimal
    margin_percent: Decimal
    amount_invoiced: Decimal
    amount_paid: Decimal
    promised_date: date | None
    version: int


class QuotePage(BaseModel):
    items: list[QuoteSummary]
    total: int
    offset: int
    limit: int
    sort: str
    counts: dict[str, int] = Field(description="orders per status under the filters (not the status); 'all' too")


class QuoteOut(QuoteSummary):
    customer_id: int
    warehouse: str | None
    branch: str | None
    order_discount_percent: Decimal
    backorder_preference: str
    list_total: Decimal
    amount_tax: Decimal
    cost_total: Decimal
    note: str
    cancel_reason: str
    workflow_id: str
    lines: list[LineOut]
    shipments: list[ShipmentOut]
    invoices: list[InvoiceOut]
    payments: list[PaymentOut]
    approval_tasks: list[TaskOut]
    credit: CreditOut
    waiting_for: str | None = Field(None, description="where the process waits (from the workflow)")
    timeline: list[TimelineEventOut] | None = Field(None, description="from the workflow; null when unreachable")
    timeline_note: str = ""
    pending_amendment: PendingAmendmentOut | None = Field(
        None, description="an amendment awaiting approval (from the workflow); its tasks are in approval_tasks")


class ActionOut(BaseModel):
    number: str
    status: str = Field(description="the order's status after the action")


class EditOut(BaseModel):
    quote: QuoteOut
    resubmitted: bool = Field(description="the edit answered a request for changes and went back to the approvers")


class NotifyProblem(BaseModel):
    quote_number: str
    reason: str


class PaymentResultOut(BaseModel):
    reference: str
    customer_code: str
    amount: Decimal
    payment_date: date
    invoice_number: str | None
    notified: list[str] = Field(description="quote numbers whose processes were told of the payment")
    not_notified: list[NotifyProblem] = Field(description="processes that could not be told (post again to retry)")


class ShipmentStateOut(BaseModel):
    shipment_number: str
    quote_number: str
    seq: int
    status: str
    promised_date: date | None
    drop_ship: bool
    lines: list[dict[str, Any]]


class Problem(BaseModel):
    detail: Any


REFUSALS = {
    403: {"model": Problem, "description": "not allowed; see X-Refusal-Reason"},
    404: {"model": Problem, "description": "no such quote, or not one you may see"},
    409: {"model": Problem, "description": "the order's state does not allow it (X-Refusal-Reason says why)"},
    503: {"model": Problem, "description": "the process engine (Temporal) cannot be reached"},
}


# ------------------------------------------------------------------------------------------- converters


def viewer_of(request: Request, user: User) -> views.OrderViewer:
    """Who reads or acts: a customer contact as a ContactViewer, which every order query limits to their
    customer, and whose actor carries the group "customer" alone (whatever groups the row holds)."""
    if user.customer_id is not None:
        return ContactViewer(user.username, frozenset({CUSTOMER_ROLE}), customer_id=user.customer_id)
    return views.OrderViewer(user.username, frozenset(current_roles(request)))


def actor_of(viewer: views.OrderViewer) -> Actor:
    return Actor(viewer.username, tuple(sorted(viewer.roles)))


def summary_of(row: views.OrderRow) -> QuoteSummary:
    return QuoteSummary(**{name: getattr(row, name) for name in QuoteSummary.model_fields})


def task_url(task_key: str) -> str:
    return f"/inbox/{task_key}"


def detail_of(d: views.OrderDetail, view: OrderView | None = None, note: str = "") -> QuoteOut:
    o, c = d.order, d.customer
    row = views.OrderRow(
        number=o.number, status=o.status, customer_code=c.code, customer_name=c.name, customer_ref=o.customer_ref,
        channel=o.channel, rep=o.rep, quote_date=o.quote_date, valid_until=o.valid_until,
        amount_untaxed=o.amount_untaxed, amount_total=o.amount_total, discount_percent=o.discount_percent,
        margin_percent=o.margin_percent, amount_invoiced=o.amount_invoiced, amount_paid=o.amount_paid,
        promised_date=o.promised_date, version=o.version, created_at=o.created_at)
    return QuoteOut(
        **summary_of(row).model_dump(),
        customer_id=c.id, warehouse=d.warehouse.code if d.warehouse else None,
        branch=d.branch.code if d.branch else None, order_discount_percent=o.order_discount_percent,
        backorder_preference=getattr(o.backorder_preference, "value", o.backorder_preference),
        list_total=o.list_total, amount_tax=o.amount_tax, cost_total=o.cost_total, note=o.note,
        cancel_reason=o.cancel_reason, workflow_id=o.workflow_id,
        lines=[LineOut(line_no=r.line.line_no, sku=r.sku, description=r.name, uom=r.uom, quantity=r.line.quantity,
                       list_price=r.line.list_price, unit_price=r.line.unit_price, manual_price=r.line.manual_price,
                       discount_percent=r.line.discount_percent, unit_cost=r.line.unit_cost,
                       tax_rate=r.line.tax_rate, subtotal=r.line.subtotal, tax_amount=r.line.tax_amount,
                       drop_ship=r.line.drop_ship, promised_date=r.line.promised_date,
                       qty_reserved=r.line.qty_reserved, qty_delivered=r.line.qty_delivered,
                       qty_invoiced=r.line.qty_invoiced, qty_cancelled=r.line.qty_cancelled, removed=r.removed,
                       removed_on=r.removed_on, removed_by=r.removed_by or None) for r in d.lines],
        shipments=[ShipmentOut(number=s.shipment.number, seq=s.shipment.seq, status=s.shipment.status,
                               drop_ship=s.shipment.drop_ship, promised_date=s.shipment.promised_date,
                               tracking_ref=s.shipment.tracking_ref, shipped_at=s.shipment.shipped_at,
                               lines=[ShipmentLineOut(line_no=x.line_no, sku=x.sku, barcode=x.barcode,
                                                      description=x.name, quantity=x.line.quantity)
                                      for x in s.lines]) for s in d.shipments],
        invoices=[InvoiceOut(number=i.number, kind=i.kind, invoice_date=i.invoice_date, due_date=i.due_date,
                             amount_untaxed=i.amount_untaxed, amount_tax=i.amount_tax,
                             amount_total=i.amount_total, amount_residual=i.amount_residual, status=i.status)
                  for i in d.invoices],
        payments=[PaymentOut(reference=p.reference, amount=p.amount, payment_date=p.payment_date,
                             invoice_number=d.invoice_numbers.get(p.invoice_id), recorded_by=p.recorded_by)
                  for p in d.payments],
        approval_tasks=[TaskOut(task_key=t.task_key, request_key=t.request_key, step_name=t.step_name,
                                status=getattr(t.status, "value", t.status),
                                outcome=getattr(t.outcome, "value", t.outcome), assignee=t.assignee,
                                candidate_groups=list(t.candidate_groups or []), due_at=t.due_at,
                                url=task_url(t.task_key)) for t in d.tasks],
        credit=CreditOut(limit=d.credit.limit, posted_receivable=d.credit.posted_receivable,
                         uninvoiced_orders=d.credit.uninvoiced_orders, this_order=d.credit.this_order,
                         exposure=d.credit.exposure, headroom=d.credit.headroom, over_limit=d.credit.over_limit),
        waiting_for=view.waiting_for if view else None,
        timeline=[TimelineEventOut(at=e.at, what=e.what, actor=e.actor, detail=e.detail) for e in view.timeline]
        if view else None,
        timeline_note=note,
        pending_amendment=PendingAmendmentOut.of(view.pending_amendment)
        if view and view.pending_amendment else None,
    )


# ------------------------------------------------------------------------------------------- field problems


class FieldProblems(Exception):
    """Bad input, field by field: [(field, reason)], a field named like "lines[2].sku" or "customer_code"."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = list(problems)

    def as_dict(self) -> dict[str, str]:
        return {f: m for f, m in self.problems}

    def http(self) -> RequestValidationError:
        return RequestValidationError([
            {"type": "value_error", "loc": ("body", *field_path(f)), "msg": m, "input": None}
            for f, m in self.problems])


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def field_path(name: str) -> tuple[str | int, ...]:
    """ "lines[2].sku" -> ("lines", 2, "sku")."""
    return tuple(int(index) if index else word for word, index in _PART.findall(name or "")) or ("body",)


def field_name(loc: Sequence[str | int]) -> str:
    """("lines", 2, "sku") -> "lines[2].sku" (the inverse of field_path)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ------------------------------------------------------------------------------------------- the service


def _status_for(kind: str | None) -> int:
    return REFUSAL_STATUS.get(kind or "", status.HTTP_409_CONFLICT)


def _application_error(err: BaseException | None) -> ApplicationError | None:
    """The innermost ApplicationError that says what went wrong: an activity's refusal arrives wrapped in an
    ActivityError, inside the update's failure."""
    found = None
    while err is not None:
        if isinstance(err, ApplicationError):
            found = err
            if err.type:
                return err
        err = getattr(err, "cause", None) or err.__cause__
    return found


async def client_or_refusal(client_source: ClientSource) -> Client:
    try:
        return await client_source()
    except HTTPException as exc:
        raise Refusal(exc.status_code, "Unavailable", str(exc.detail)) from None


# Refusals that say "not yet" rather than "no", and how often each is tried before the answer goes out: a workflow
# that has just started refuses with NotReady until its first activity loaded the quote, which a client calling
# submit right after create would otherwise see; WorkflowNotReady is the server's refusal while the workflow's last
# task keeps failing (its worker died mid-task, or a bug), which a retry a moment later may find over.
TRANSIENT_REFUSALS: dict[str, int] = {"NotReady": 25, "WorkflowNotReady": 5}
TRANSIENT_RETRY_SECONDS = 0.2
TRY_AGAIN = "try again in a few seconds"


async def execute_update(client: Client, workflow_id: str, name: str, arg: Any, result_type: type | None,
                         what: str) -> Any:
    """One Update; a refusal becomes a Refusal with the validator's type and message."""
    tries = 0
    while True:
        try:
            return await _execute_update(client, workflow_id, name, arg, result_type, what)
        except Refusal as refusal:
            tries += 1
            if tries >= TRANSIENT_REFUSALS.get(refusal.reason, 0):
                raise
        await asyncio.sleep(TRANSIENT_RETRY_SECONDS)


def workflow_not_ready(err: RPCError) -> bool:
    """The server's refusal of a request to a workflow whose workflow task keeps failing ("Unable to query workflow
    due to Workflow Task in failed state", a WorkflowNotReady failure) until a worker runs that task through. The
    dev server refuses queries so (tests/api/test_payment_import_api.py) and holds Updates until our deadline; a
    server that refuses an Update so has not admitted it, so sending it again is safe."""
    return (any(d.type_url.endswith("WorkflowNotReadyFailure") for d in err.grpc_status.details)
            or "Workflow Task in failed state" in err.message)


def engine_refusal(err: RPCError, what: str) -> Refusal:
    """An RPC failure of the engine, as the answer to the client: every one of them is a 503 to try again, never a
    500 (the request was well formed; the engine could not take it now)."""
    if workflow_not_ready(err):
        return Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "WorkflowNotReady",
                       f"the process of {what} is recovering from a stopped worker; {TRY_AGAIN}")
    code = err.status.name if err.status is not None else "error"
    return Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "Unavailable",
                   f"the process engine (Temporal) did not accept the request ({code}: {err.message}); {TRY_AGAIN}")


async def _execute_update(client: Client, workflow_id: str, name: str, arg: Any, result_type: type | None,
                          what: str) -> Any:
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(UPDATE_TIMEOUT_SECONDS):
            return await handle.execute_update(name, arg, result_type=result_type)
    except WorkflowUpdateFailedError as err:
        cause = _application_error(err.cause)
        if cause is not None:
            problem = _field_of(cause)
            if problem is not None:
                raise FieldProblems([problem]) from None
            kind = cause.type or "Refused"
            raise Refusal(_status_for(kind), kind, cause.message) from None
        raise Refusal(status.HTTP_409_CONFLICT, "Refused", str(err.cause or err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refusal(status.HTTP_409_CONFLICT, PROCESS_ENDED,
                          f"the process of {what} has ended (or never started)") from None
        raise engine_refusal(err, what) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "Unavailable",
                      f"the process engine did not answer in time; is a worker running? {TRY_AGAIN.capitalize()}"
                      ) from None


def _field_of(error: ApplicationError) -> tuple[str, str] | None:
    """An input refusal of an activity carries (field, reason) as its details (activities/sales.py), e.g.
    ("lines[2].sku", "no product ..."): the answer names the field like any other 422."""
    if error.type not in ("OrderInputInvalid", "OrderInputError") or not error.details:
        return None
    details = list(error.details)
    field = details[0] if isinstance(details[0], str) else None
    if not field:
        return None
    reason = details[1] if len(details) > 1 and isinstance(details[1], str) else error.message
    return field, reason


@dataclass(frozen=True)
class OrderInfo:
    """What the API needs to know about an order before it asks its workflow (read, then the transaction ends)."""

    number: str
    status: str
    workflow_id: str
    rep: str
    version: int


def finish_read(session: Session) -> None:
    """End a read transaction keeping what was loaded: the rows are detached first, so reading them afterwards
    needs no reload. (A reload would open a new transaction, which on SQLite takes the write lock, BEGIN
    IMMEDIATE, and hold it while we wait on a workflow whose activity needs that lock.)"""
    session.expunge_all()
    session.commit()


def load_order(session: Session, viewer: views.OrderViewer, number: str) -> OrderInfo:
    """The order as the viewer may see it; raises Refusal 404 otherwise. Ends the read transaction."""
    try:
        order = views.visible_order(session, viewer, number)
        if order is None:
            raise Refusal(status.HTTP_404_NOT_FOUND, "NotVisible", f"quote {number[:30]} not found")
        return OrderInfo(order.number, order.status, order.workflow_id or q2c_id(order.number), order.rep,
                         order.version)
    finally:
        session.commit()


def _check_skus(session: Session, lines: Sequence[QuoteLineIn]) -> None:
    """Unknown or inactive SKUs, each named by its line (one query for all of them)."""
    wanted = {line.sku.strip() for line in lines}
    known = set(session.scalars(select(Product.sku).where(Product.sku.in_(sorted(wanted)), Product.active.is_(True))))
    problems = [(f"lines[{i}].sku", f"no active product with SKU {line.sku.strip()!r}")
                for i, line in enumerate(lines) if line.sku.strip() not in known]
    if problems:
        raise FieldProblems(problems)


def _draft(body: QuoteCreateIn) -> orders.QuoteDraft:
    kwargs: dict[str, Any] = {}
    if body.valid_until is not None:
        kwargs["valid_until"] = body.valid_until
    return orders.QuoteDraft(
        customer_code=body.customer_code.strip(),
        lines=tuple(line.contract() for line in body.lines),
        customer_ref=(body.customer_ref or "").strip() or None,
        channel=body.channel,
        order_discount_percent=body.order_discount_percent,
        backorder_preference=body.backorder_preference,
        warehouse_code=(body.warehouse_code or "").strip() or None,
        note=body.note,
        **kwargs,
    )


def _duplicate(err: Exception, code: str, ref: str | None, existing: str | None) -> Refusal:
    return Refusal(status.HTTP_409_CONFLICT, "DuplicateCustomerRef",
                   f"customer {code} already sent the reference {ref!r}: it is quote {existing}" if existing else
                   f"customer {code} already sent the reference {ref!r}")


def _write_quote(session: Session, viewer: views.OrderViewer, body: QuoteCreateIn,
                 today: date) -> tuple[str, tuple[Decimal, str, str]]:
    """The new quote's number and its identity (orders.quote_identity), read in the same transaction."""
    code = body.customer_code.strip()
    ref = (body.customer_ref or "").strip() or None
    try:
        order = orders.create_quote(session, _draft(body), rep=viewer.username, today=today)
        number = order.number
        identity = orders.quote_identity(session, number)
        session.commit()
        return number, identity
    except orders.OrderInputError as err:
        session.rollback()
        raise FieldProblems([(err.field, err.reason)]) from None
    except orders.DuplicateCustomerRef as err:
        session.rollback()
        raise _duplicate(err, err.customer_code, err.customer_ref, err.existing_number) from None
    except IntegrityError as err:
        # Two posts of one reference raced past the check: the unique constraint decided.
        session.rollback()
        if ref is None:
            raise
        existing = session.scalar(
            select(SalesOrder.number).join_from(SalesOrder, Customer, Customer.id == SalesOrder.customer_id)
            .where(Customer.code == code, SalesOrder.customer_ref == ref))
        session.commit()
        raise _duplicate(err, code, ref, existing) from None


def _forget_quote(session: Session, number: str) -> None:
    """Remove a quote whose process could not be started, so nothing half-made stays behind (numbers may have
    gaps; a duplicate customer_ref must not block the client's retry)."""
    order_id = session.scalar(select(SalesOrder.id).where(SalesOrder.number == number))
    if order_id is not None:
        session.execute(delete(SalesOrderLine).where(SalesOrderLine.order_id == order_id))
        session.execute(delete(SalesOrder).where(SalesOrder.id == order_id))
    session.commit()


async def create_quote(session: Session, client_source: ClientSource, settings, viewer: views.OrderViewer,
                       body: QuoteCreateIn, today: date | None = None) -> str:
    """Write the quote, then start its QuoteToCash workflow; the quote number. Raises Refusal or FieldProblems."""
    client = await client_or_refusal(client_source)  # unreachable engine: refuse before anything is written
    number, (total, customer_code, warehouse_code) = await run_in_threadpool(
        _write_quote, session, viewer, body, today or datetime.now(UTC).date())
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            await client.start_workflow(
                QUOTE_TO_CASH_WORKFLOW,
                QuoteToCashInput(quote_number=number, rep=viewer.username, standing_timers=True),
                id=q2c_id(number), task_queue=settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=new_order_attributes(amount_total=total, rep=viewer.username,
                                                       customer_code=customer_code, warehouse_code=warehouse_code))
    except WorkflowAlreadyStartedError:
        pass  # a retried start found the first one: the process runs
    except (RPCError, TimeoutError) as err:
        if not await _workflow_exists(client, q2c_id(number)):
            await run_in_threadpool(_forget_quote, session, number)
            reason = err.message if isinstance(err, RPCError) else "no answer in time"
            raise Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "Unavailable",
                          f"the quote was not saved: its process could not be started ({reason}); "
                          "try again shortly") from None
    return number


async def _workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            await client.get_workflow_handle(workflow_id).describe()
        return True
    except Exception:  # not found, or the engine is gone: either way the process does not run for us
        return False


async def order_view(client_source: ClientSource, workflow_id: str) -> tuple[OrderView | None, str]:
    """The workflow's view() query, or None and why not (the page shows itself without the timeline)."""
    try:
        client = await client_source()
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            view = await client.get_workflow_handle(workflow_id).query(QUERY_VIEW, result_type=OrderView)
        return view, ""
    except HTTPException as exc:
        return None, f"timeline unavailable: {exc.detail}"
    except TimeoutError:
        return None, "timeline unavailable: the process engine did not answer in time"
    except RPCError as err:
        return None, f"timeline unavailable: {err.message}"
    except Exception as err:  # a query the workflow refuses (e.g. it has ended long ago) is no page error
        return None, f"timeline unavailable: {err}"


def _audit_refusal(session: Session, viewer: views.OrderViewer, number: str, action: str, refusal: Refusal) -> None:
    if refusal.status_code == status.HTTP_503_SERVICE_UNAVAILABLE:
        return  # an engine that is down or not ready refused nothing
    audit(session, actor=viewer.username, action=f"quote.{action}.refused", entity_kind="sales_order",
          entity_id=number, reason=f"{refusal.reason}: {refusal.message}",
          data={"reason": refusal.reason, "status": refusal.status_code})
    session.commit()


ACTIONS = {"submit": UPDATE_SUBMIT, "accept": UPDATE_ACCEPT, "cancel": UPDATE_CANCEL}


async def quote_action(session: Session, client_source: ClientSource, viewer: views.OrderViewer, number: str,
                       action: str, *, comment: str = "", expected_version: int | None = None,
                       choice: str | None = None) -> str:
    """submit, accept, cancel or backorder (with `choice`); the status after. Raises Refusal."""
    contact = isinstance(viewer, ContactViewer)
    if not viewer.sells and not (contact and action in CUSTOMER_ACTIONS):
        raise Refusal(status.HTTP_403_FORBIDDEN, "NotAllowed", "only sales reps and sales managers act on quotes")
    info = await run_in_threadpool(load_order, session, viewer, number)
    try:
        if contact and action == "cancel" and info.status not in CUSTOMER_CANCELLABLE:
            # The workflow would let a customer cancel later too; once goods move, changes go through the rep.
            raise Refusal(status.HTTP_409_CONFLICT, "NotCancellable",
                          f"quote {info.number} is {info.status.replace('_', ' ')}: ask your sales contact "
                          f"({info.rep}) to change or cancel it")
        client = await client_or_refusal(client_source)
        actor = actor_of(viewer)
        if action == "backorder":
            command: Any = BackorderChoiceCommand(actor=actor, choice=choice or "")
            name = UPDATE_BACKORDER
        else:
            command = QuoteCommand(actor=actor, comment=comment, expected_version=expected_version)
            name = ACTIONS[action]
        return await execute_update(client, info.workflow_id, name, command, str, f"quote {info.number}")
    except Refusal as refusal:
        await run_in_threadpool(_audit_refusal, session, viewer, info.number, action, refusal)
        raise


@dataclass(frozen=True)
class EditResult:
    state: QuoteState
    resubmitted: bool


async def edit_quote(session: Session, client_source: ClientSource, viewer: views.OrderViewer, number: str,
                     body: QuotePatchIn) -> EditResult:
    """The edit_quote Update; then, when an approver had asked for changes, the chain's resubmit Update."""
    if not viewer.sells:
        raise Refusal(status.HTTP_403_FORBIDDEN, "NotAllowed", "only sales reps and sales managers edit quotes")
    info = await run_in_threadpool(load_order, session, viewer, number)
    if body.lines is not None:
        def check() -> None:
            try:
                _check_skus(session, body.lines or [])
            finally:
                session.commit()
        await run_in_threadpool(check)
    command = EditQuoteCommand(
        actor=actor_of(viewer),
        lines=tuple(line.contract() for line in body.lines) if body.lines is not None else None,
        order_discount_percent=body.order_discount_percent, valid_until=body.valid_until,
        customer_ref=body.customer_ref, backorder_preference=body.backorder_preference,
        expected_version=body.expected_version)
    try:
        client = await client_or_refusal(client_source)
        state = await execute_update(client, info.workflow_id, UPDATE_EDIT, command, QuoteState,
                                     f"quote {info.number}")
    except Refusal as refusal:
        await run_in_threadpool(_audit_refusal, session, viewer, info.number, "edit", refusal)
        raise
    resubmitted = False
    if info.status == "changes_requested":
        # The same facts a new quote would be judged on (quote_facts is the workflow's own function).
        judged = quote_facts(state, info.rep)
        facts = {"amount": judged.amount, "discount_percent": judged.discount_percent,
                 "margin_percent": judged.margin_percent, "customer_segment": judged.customer_segment,
                 "category": judged.category, "branch": judged.branch}
        try:
            await inbox_api.resubmit(session, client_source, inbox_model.Viewer(viewer.username, viewer.roles),
                                     f"quote:{info.number}", body.comment, facts)
        except Refusal as refusal:
            raise Refusal(refusal.status_code, refusal.reason,
                          f"the quote was changed, but not sent back to the approvers: {refusal.message}") from None
        resubmitted = True
    return EditResult(state, resubmitted)


async def amend_order(session: Session, client_source: ClientSource, viewer: views.OrderViewer, number: str,
                      body: QuoteAmendIn) -> AmendOrderAnswer:
    """The amend_order Update of a confirmed order; the order as amended, or as it stands with the amendment
    pending (`pending_amendment`: the quote policy's approvers decide). Raises Refusal or FieldProblems."""
    if not viewer.sells:
        raise Refusal(status.HTTP_403_FORBIDDEN, "NotAllowed", "only sales reps and sales managers amend orders")
    info = await run_in_threadpool(load_order, session, viewer, number)

    def check() -> None:
        try:
            _check_skus(session, body.lines)
        finally:
            session.commit()
    await run_in_threadpool(check)
    command = AmendOrderCommand(actor=actor_of(viewer), lines=tuple(line.contract() for line in body.lines),
                                comment=body.comment, expected_version=body.expected_version)
    try:
        client = await client_or_refusal(client_source)
        return await execute_update(client, info.workflow_id, UPDATE_AMEND, command, AmendOrderAnswer,
                                    f"order {info.number}")
    except Refusal as refusal:
        await run_in_threadpool(_audit_refusal, session, viewer, info.number, "amend", refusal)
        raise


@dataclass
class PaymentResult:
    payment: CustomerPayment
    customer_code: str
    invoice_number: str | None
    created: bool
    notified: list[str]
    not_notified: list[tuple[str, str]]


def _write_payment(session: Session, viewer: views.OrderViewer, body: PaymentIn):
    existed = session.scalar(select(CustomerPayment.id).where(CustomerPayment.reference == body.reference.strip()))
    try:
        payment, numbers = orders.record_payment(
            session, reference=body.reference.strip(), customer_code=body.customer_code.strip(), amount=body.amount,
            payment_date=body.payment_date, recorded_by=viewer.username,
            invoice_number=(body.invoice_number or "").strip() or None)
        invoice_number = None
        if payment.invoice_id is not None:
            invoice_number = session.scalar(select(CustomerInvoice.number)
                                            .where(CustomerInvoice.id == payment.invoice_id))
        session.flush()
        finish_read(session)
    except orders.OrderInputError as err:
        session.rollback()
        raise FieldProblems([(err.field, err.reason)]) from None
    return payment, list(dict.fromkeys(numbers)), invoice_number, existed is None


async def record_payment(session: Session, client_source: ClientSource, viewer: views.OrderViewer,
                         body: PaymentIn) -> PaymentResult:
    """Record the payment (idempotent by reference), then tell each concerned QuoteToCash workflow."""
    payment, numbers, invoice_number, created = await run_in_threadpool(_write_payment, session, viewer, body)
    notice = PaymentNotice(payment_reference=payment.reference, customer_id=payment.customer_id, amount=payment.amount)
    notified, problems = await tell_payments(client_source, [(n, notice) for n in numbers])
    return PaymentResult(payment, body.customer_code.strip(), invoice_number, created, notified, problems)


SIGNAL_CONCURRENCY = 16  # a bank statement may concern hundreds of orders: not all signals at once


async def tell_payments(client_source: ClientSource, notices: Sequence[tuple[str, PaymentNotice]]
                        ) -> tuple[list[str], list[tuple[str, str]]]:
    """Signal payment_received to the QuoteToCash workflow of each (quote number, notice), after the payments were
    committed: the single payment and the bank statement import both come here. Returns (quote numbers told,
    sorted; [(quote number, why not)] for those that could not be). An order's notices go one after another in the
    given order; one that fails leaves that order's later ones unsent (the answer says to send again: a repeated
    payment is recorded once and told again, which the workflow takes as a fresh look at the balance)."""
    by_quote: dict[str, list[PaymentNotice]] = {}
    for number, notice in notices:
        by_quote.setdefault(number, []).append(notice)
    if not by_quote:
        return [], []
    try:
        client = await client_source()
    except HTTPException as exc:
        return [], sorted((n, str(exc.detail)) for n in by_quote)
    notified: list[str] = []
    problems: list[tuple[str, str]] = []
    gate = asyncio.Semaphore(SIGNAL_CONCURRENCY)

    async def tell(number: str, pending: list[PaymentNotice]) -> None:
        async with gate:
            handle = client.get_workflow_handle(q2c_id(number))
            try:
                for notice in pending:
                    async with asyncio.timeout(UPDATE_TIMEOUT_SECONDS):
                        await handle.signal(SIGNAL_PAYMENT, notice)
                notified.append(number)
            except RPCError as err:
                problems.append((number, "its process has ended" if err.status == RPCStatusCode.NOT_FOUND
                                 else f"the process engine refused: {err.message}"))
            except TimeoutError:
                problems.append((number, "the process engine did not answer in time"))

    await asyncio.gather(*(tell(n, p) for n, p in by_quote.items()))
    return sorted(notified), sorted(problems)


async def shipment_step(session: Session, client_source: ClientSource, viewer: views.OrderViewer,
                        shipment_number: str, body: ShipmentStepIn) -> ShipmentState:
    """Check the scans against the shipment's lines, then the Shipment workflow's step Update."""
    def prepare() -> views.ShipmentRow:
        try:
            row = views.shipment_row(session, shipment_number)
            if row is None:
                raise Refusal(status.HTTP_404_NOT_FOUND, "NotFound", f"shipment {shipment_number[:30]} not found")
            return row
        finally:
            finish_read(session)

    row = await run_in_threadpool(prepare)
    skus, unknown, missing = views.match_scans(row, body.scanned)
    problems = [(f"scanned[{i}]", f"{code!r} is not on shipment {row.shipment.number}") for i, code in unknown]
    if not problems and (body.step == "picked" or body.scanned) and missing:
        problems.append(("scanned", f"not scanned yet: {', '.join(missing)}"))
    if problems:
        raise FieldProblems(problems)
    client = await client_or_refusal(client_source)
    command = ShipmentStepCommand(actor=actor_of(viewer), step=body.step, scanned=skus,
                                  tracking_ref=body.tracking_ref.strip())
    workflow_id = shipment_id(row.quote_number, row.shipment.seq)
    try:
        return await execute_update(client, workflow_id, UPDATE_SHIPMENT_STEP, command, ShipmentState,
                                    f"shipment {row.shipment.number}")
    except Refusal as refusal:
        if refusal.reason != PROCESS_ENDED:
            raise
        # The Shipment workflow ends once shipped: a repeated step (a second click, a scanner's retry, a client
        # whose first answer was lost) finds it completed. Every step up to "shipped" is recorded then, so the
        # answer is the shipment as it stands, as the running workflow answers a repeat.
        ended = await _ended_shipment(session, client, workflow_id, row)
        if ended is None:
            raise
        if ended.status == ShipmentStatus.cancelled:
            raise Refusal(status.HTTP_409_CONFLICT, "ShipmentCancelled",
                          f"{row.shipment.number} was cancelled: nothing more is recorded on it") from None
        return ended


async def _ended_shipment(session: Session, client: Client, workflow_id: str,
                          row: views.ShipmentRow) -> ShipmentState | None:
    """The state an ended Shipment workflow finished in (its result; the row when the result cannot be read), or
    None when it has not finished as shipped or cancelled (e.g. it never started)."""
    outcome: str | None = None
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            handle = client.get_workflow_handle(workflow_id, result_type=ShipmentResult)
            result = await handle.result(follow_runs=False)
        outcome = result.status
    except (RPCError, TimeoutError, WorkflowFailureError):
        def read() -> str | None:
            try:
                again = views.shipment_row(session, row.shipment.number)
                return again.shipment.status if again is not None else None
            finally:
                finish_read(session)

        outcome = await run_in_threadpool(read)
    if outcome not in (ShipmentStatus.shipped, ShipmentStatus.cancelled):
        return None
    s = row.shipment
    return ShipmentState(
        shipment_number=s.number, quote_number=row.quote_number, seq=s.seq, status=outcome,
        promised_date=s.promised_date, drop_ship=s.drop_ship,
        lines=tuple(ShipmentLineState(order_line_id=x.line.order_line_id, product_id=x.line.product_id, sku=x.sku,
                                      quantity=x.line.quantity) for x in row.lines))


# ------------------------------------------------------------------------------------------- routes


def _client_source(request: Request, settings) -> ClientSource:
    return lambda: get_temporal_client(request, settings)


def _refused(refusal: Refusal) -> HTTPException:
    return refusal.http()


async def _detail(request: Request, session: Session, settings, viewer: views.OrderViewer, number: str,
                  with_timeline: bool = True) -> QuoteOut:
    def read() -> views.OrderDetail | None:
        try:
            return views.order_detail(session, viewer, number)
        finally:
            finish_read(session)

    detail = await run_in_threadpool(read)
    if detail is None:
        raise HTTPException(404, detail=f"quote {number[:30]} not found")
    view, note = (await order_view(_client_source(request, settings), detail.order.workflow_id)
                  if with_timeline else (None, ""))
    return detail_of(detail, view, note)


@router.post("/quotes", response_model=QuoteOut, status_code=status.HTTP_201_CREATED,
             responses={409: REFUSALS[409], 503: REFUSALS[503]})
async def post_quote(body: QuoteCreateIn, request: Request, response: Response, session: SessionDep,
                     user: SalesUser, settings: SettingsDep) -> QuoteOut:
    """Create a quote (priced from the customer's pricelist) and start its quote-to-cash process."""
    viewer = viewer_of(request, user)
    try:
        number = await create_quote(session, _client_source(request, settings), settings, viewer, body)
    except FieldProblems as problems:
        raise problems.http() from None
    except Refusal as refusal:
        raise _refused(refusal) from None
    response.headers["Location"] = f"/api/v1/quotes/{number}"
    return await _detail(request, session, settings, viewer, number, with_timeline=False)


SortName = Literal[tuple(v for key in views.SORTS for v in (key, f"-{key}"))]  # type: ignore[valid-type]
StatusName = Literal[views.STATUSES]  # type: ignore[valid-type]


@router.get("/quotes", response_model=QuotePage | contact_api.ContactQuotePage)
def list_quotes(
    request: Request,
    session: SessionDep,
    user: QuoteReader,
    order_status: Annotated[StatusName | None, Query(alias="status")] = None,
    customer: Annotated[str | None, Query(max_length=views.MAX_TEXT, description="code, or text in the name")] = None,
    rep: Annotated[str | None, Query(max_length=60)] = None,
    date_from: Annotated[date | None, Query(description="quote date from (inclusive)")] = None,
    date_to: Annotated[date | None, Query(description="quote date up to (inclusive)")] = None,
    q: Annotated[str | None, Query(max_length=views.MAX_TEXT, description="text in the number or reference")] = None,
    sort: SortName = views.DEFAULT_SORT,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
) -> QuotePage:
    """Quotes and orders you may see (reps: their own; managers, finance, admins: all; credit controllers: those
    on hold; the warehouse: those being fulfilled), filtered, sorted and paged, with the count per status.
    A customer contact gets their customer's quotes once sent to them, whatever the filters say (ContactQuotePage)."""
    viewer = viewer_of(request, user)
    filters = views.OrderFilters(customer=customer, rep=rep, date_from=date_from, date_to=date_to, text=q)
    if isinstance(viewer, ContactViewer):
        return contact_api.contact_quotes(session, viewer, status=order_status, filters=filters, sort=sort,
                                          offset=offset, limit=limit)
    page = views.search_orders(session, viewer, status=order_status, filters=filters, sort=sort, offset=offset,
                               limit=limit)
    session.commit()
    return QuotePage(items=[summary_of(r) for r in page.rows], total=page.total, offset=page.offset,
                     limit=page.limit, sort=page.sort, counts=page.counts)


@router.get("/quotes/{number}", response_model=QuoteOut | contact_api.ContactQuoteOut,
            responses={404: REFUSALS[404]})
async def get_quote(number: str, request: Request, session: SessionDep, user: QuoteReader,
                    settings: SettingsDep) -> QuoteOut | contact_api.ContactQuoteOut:
    """One quote or order in full, with its timeline from the process when the engine answers. A customer contact
    gets ContactQuoteOut for their own customer's quote, and 404 for any other (its existence is not told)."""
    viewer = viewer_of(request, user)
    if isinstance(viewer, ContactViewer):
        found = await run_in_threadpool(contact_api.contact_quote, session, viewer, number)
        if found is None:
            raise HTTPException(404, detail=f"quote {number[:30]} not found")
        return found
    return await _detail(request, session, settings, viewer, number)


@router.patch("/quotes/{number}", response_model=EditOut, responses=REFUSALS)
async def patch_quote(number: str, body: QuotePatchIn, request: Request, session: SessionDep, user: SalesUser,
                      settings: SettingsDep) -> EditOut:
    """Edit a draft quote, or one an approver sent back (it then goes back to the approvers)."""
    viewer = viewer_of(request, user)
    try:
        result = await edit_quote(session, _client_source(request, settings), viewer, number, body)
    except FieldProblems as problems:
        raise problems.http() from None
    except Refusal as refusal:
        raise _refused(refusal) from None
    quote = await _detail(request, session, settings, viewer, number, with_timeline=False)
    return EditOut(quote=quote, resubmitted=result.resubmitted)


@router.post("/quotes/{number}/amend", response_model=QuoteOut,
             responses={**REFUSALS, 202: {"model": QuoteOut,
                                          "description": "the amendment awaits approval (pending_amendment)"}})
async def amend_quote(number: str, body: QuoteAmendIn, request: Request, response: Response, session: SessionDep,
                      user: SalesUser, settings: SettingsDep) -> QuoteOut:
    """Amend a confirmed order (or one waiting for the customer's backorder choice): change quantities or prices
    (unit_price, discount_percent), add or remove lines before they ship. A lower price on invoiced units is
    credited (credit note with tax). Refused below what shipped or waits in an open shipment (422), over the credit
    limit (409 CreditLimitExceeded), on a stale version (409), with 409 OrderStateInvalid for a higher price on
    invoiced units or while an earlier amendment awaits approval. Prices the quote approval policy routes to
    approval answer 202 with `pending_amendment`: nothing changes until the approvers agree (their tasks are in
    `approval_tasks`); approved, it is applied (or refused then, if the order moved on); the rep hears either way."""
    viewer = viewer_of(request, user)
    try:
        answer = await amend_order(session, _client_source(request, settings), viewer, number, body)
    except FieldProblems as problems:
        raise problems.http() from None
    except Refusal as refusal:
        raise _refused(refusal) from None
    out = await _detail(request, session, settings, viewer, number)
    if answer.pending_amendment is not None:
        response.status_code = status.HTTP_202_ACCEPTED
        # The Update's own answer, should the timeline query not have answered.
        out.pending_amendment = out.pending_amendment or PendingAmendmentOut.of(answer.pending_amendment)
    return out


async def _action(request: Request, session: Session, user: User, settings, number: str, action: str,
                  **kwargs: Any) -> ActionOut:
    viewer = viewer_of(request, user)
    try:
        state = await quote_action(session, _client_source(request, settings), viewer, number, action, **kwargs)
    except FieldProblems as problems:
        raise problems.http() from None
    except Refusal as refusal:
        raise _refused(refusal) from None
    return ActionOut(number=number, status=state)


@router.post("/quotes/{number}/submit", response_model=ActionOut, responses=REFUSALS)
async def submit_quote(number: str, request: Request, session: SessionDep, user: SalesUser, settings: SettingsDep,
                       body: QuoteActionIn | None = None) -> ActionOut:
    """Submit the quote: to the approvers when the policy asks for it, else it is sent to the customer."""
    body = body or QuoteActionIn()
    return await _action(request, session, user, settings, number, "submit", comment=body.comment,
                         expected_version=body.expected_version)


@router.post("/quotes/{number}/accept", response_model=ActionOut, responses=REFUSALS)
async def accept_quote(number: str, request: Request, session: SessionDep, user: CustomerOrSales,
                       settings: SettingsDep, body: QuoteActionIn | None = None) -> ActionOut:
    """Record the customer's acceptance (a rep), or accept (the customer's contact): credit check, reservation and
    fulfilment follow."""
    body = body or QuoteActionIn()
    return await _action(request, session, user, settings, number, "accept", comment=body.comment,
                         expected_version=body.expected_version)


@router.post("/quotes/{number}/cancel", response_model=ActionOut, responses=REFUSALS)
async def cancel_quote(number: str, request: Request, session: SessionDep, user: CustomerOrSales,
                       settings: SettingsDep, body: QuoteActionIn | None = None) -> ActionOut:
    """Cancel the quote or order (reservations released, unshipped quantities cancelled, credit note if due). The
    customer's contact may decline a sent quote, or withdraw while the order waits on credit or on their backorder
    answer (409 NotCancellable later); the comment is the reason."""
    body = body or QuoteActionIn()
    return await _action(request, session, user, settings, number, "cancel", comment=body.comment,
                         expected_version=body.expected_version)


@router.post("/quotes/{number}/backorder-choice", response_model=ActionOut, responses=REFUSALS)
async def backorder_choice(number: str, body: BackorderChoiceIn, request: Request, session: SessionDep,
                           user: CustomerOrSales, settings: SettingsDep) -> ActionOut:
    """The customer's answer when stock is short: ship what is there, wait for all, or cancel the rest (given by
    the customer's contact, or recorded by a rep)."""
    return await _action(request, session, user, settings, number, "backorder", choice=body.choice)


@router.post("/payments", response_model=PaymentResultOut, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": PaymentResultOut, "description": "this reference was recorded before"}})
async def post_payment(body: PaymentIn, request: Request, response: Response, session: SessionDep,
                       user: FinanceUser, settings: SettingsDep) -> PaymentResultOut:
    """Record a customer payment (idempotent by bank reference) and tell the orders it concerns: a payment that
    brings the customer under the credit limit releases their orders on hold."""
    viewer = viewer_of(request, user)
    try:
        result = await record_payment(session, _client_source(request, settings), viewer, body)
    except FieldProblems as problems:
        raise problems.http() from None
    if not result.created:
        response.status_code = status.HTTP_200_OK
    p = result.payment
    return PaymentResultOut(reference=p.reference, customer_code=result.customer_code, amount=p.amount,
                            payment_date=p.payment_date, invoice_number=result.invoice_number,
                            notified=result.notified,
                            not_notified=[NotifyProblem(quote_number=n, reason=r) for n, r in result.not_notified])


@router.post("/shipments/{shipment_number}/steps", response_model=ShipmentStateOut,
             responses={404: {"model": Problem, "description": "no such shipment"}, 409: REFUSALS[409],
                        503: REFUSALS[503]})
async def post_shipment_step(shipment_number: str, body: ShipmentStepIn, request: Request, session: SessionDep,
                             user: WarehouseUser, settings: SettingsDep) -> ShipmentStateOut:
    """Record picked, packed or shipped; the scanned barcodes or SKUs must be the shipment's lines."""
    try:
        state = await shipment_step(session, _client_source(request, settings), viewer_of(request, user),
                                    shipment_number, body)
    except FieldProblems as problems:
        raise problems.http() from None
    except Refusal as refusal:
        raise _refused(refusal) from None
    return ShipmentStateOut(
        shipment_number=state.shipment_number, quote_number=state.quote_number, seq=state.seq, status=state.status,
        promised_date=state.promised_date, drop_ship=state.drop_ship,
        lines=[{"order_line_id": x.order_line_id, "sku": x.sku, "quantity": x.quantity} for x in state.lines])
