"""Quote-to-cash side effects for the QuoteToCash and Shipment workflows: each activity is one transaction over
models/orders.py and idempotent by its natural key (quote number, shipment seq, invoice key, message key), because
Temporal retries activities. Business refusals become non-retryable ApplicationErrors whose type the workflow
and the API recognise; the `details` carry the field and reason of bad input.

The quote itself is created by the API (models.orders.create_quote) before the workflow starts, so there is no
create_quote activity."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models import inventory, orders
from models.common import utcnow
from models.db import read_only_session, transaction
from workflows.contracts import (
    AcceptOrderResult,
    AmendOrderInput,
    AmendOrderResult,
    CancelBackorderInput,
    CancelBackorderResult,
    CancelOrderInput,
    CancelOrderResult,
    ConfirmOrderInput,
    ConfirmOrderResult,
    CreateShipmentInput,
    CreditCheckResult,
    EditQuoteInput,
    InvoiceInput,
    InvoiceState,
    OrderBalance,
    OrderNotifyInput,
    QuoteRef,
    QuoteState,
    RecordShipmentStepInput,
    ReserveOrderResult,
    SetOrderStatusInput,
    SettleOrderInput,
    SettleOrderResult,
    ShipmentState,
)

# ApplicationError types (the API maps them: not found → 404, input → 422, state and duplicates → 409).
ORDER_NOT_FOUND = "OrderNotFound"
ORDER_INPUT_INVALID = "OrderInputInvalid"
ORDER_STATE_INVALID = "OrderStateInvalid"
STALE_VERSION = "StaleVersion"
CREDIT_LIMIT_EXCEEDED = "CreditLimitExceeded"
DUPLICATE_CUSTOMER_REF = "DuplicateCustomerRef"
INSUFFICIENT_STOCK = "InsufficientStock"
STOCK_REQUEST_INVALID = "StockRequestInvalid"

# event -> subject template (OrderNotifyInput.event); the notices themselves are written by models/orders.py
SUBJECTS = orders.NOTICE_SUBJECTS


def _today() -> date:
    # Activities may read the clock (workflows may not); the business date is the server's UTC date.
    return utcnow().date()


def _refusal(err: Exception) -> ApplicationError:
    """The ApplicationError for a business refusal from models.orders or models.inventory."""
    if isinstance(err, orders.OrderNotFound):
        return ApplicationError(str(err), err.field, err.reason, type=ORDER_NOT_FOUND, non_retryable=True)
    if isinstance(err, orders.OrderInputError):
        return ApplicationError(str(err), err.field, err.reason, type=ORDER_INPUT_INVALID, non_retryable=True)
    if isinstance(err, orders.CreditLimitExceeded):
        return ApplicationError(str(err), err.status, type=CREDIT_LIMIT_EXCEEDED, non_retryable=True)
    if isinstance(err, orders.StaleVersion):
        return ApplicationError(str(err), err.status, type=STALE_VERSION, non_retryable=True)
    if isinstance(err, orders.OrderStateError):
        return ApplicationError(str(err), err.status, type=ORDER_STATE_INVALID, non_retryable=True)
    if isinstance(err, orders.DuplicateCustomerRef):
        return ApplicationError(str(err), err.existing_number, type=DUPLICATE_CUSTOMER_REF, non_retryable=True)
    if isinstance(err, inventory.InsufficientStock):
        return ApplicationError(str(err), type=INSUFFICIENT_STOCK, non_retryable=True)
    return ApplicationError(str(err), type=STOCK_REQUEST_INVALID, non_retryable=True)


REFUSALS = (orders.OrderInputError, orders.OrderStateError, orders.DuplicateCustomerRef, inventory.StockError)


class SalesActivities:
    def __init__(self, engine: Engine, public_url: str = "http://127.0.0.1:8000") -> None:
        self.engine = engine
        self.public_url = public_url.rstrip("/")

    @activity.defn
    def load_quote(self, request: QuoteRef) -> QuoteState:
        try:
            with transaction(self.engine) as session:
                return orders.quote_state(session, request.quote_number)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def edit_quote(self, request: EditQuoteInput) -> QuoteState:
        try:
            with transaction(self.engine) as session:
                order = orders.edit_quote(session, request.quote_number, request.command, today=_today())
                return orders.quote_state(session, request.quote_number, order=order)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def set_order_status(self, request: SetOrderStatusInput) -> QuoteState | None:
        try:
            with transaction(self.engine) as session:
                order = orders.set_status(session, request.quote_number, request.status, actor=request.actor,
                                          reason=request.reason)
                return orders.quote_state(session, request.quote_number, order=order) if request.quote else None
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def check_credit(self, request: QuoteRef) -> CreditCheckResult:
        try:
            with transaction(self.engine) as session:
                return orders.credit_check(session, request.quote_number)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def reserve_order(self, request: QuoteRef) -> ReserveOrderResult:
        try:
            with transaction(self.engine) as session:
                return orders.reserve_order(session, request.quote_number)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def create_shipment(self, request: CreateShipmentInput) -> ShipmentState | None:
        try:
            with transaction(self.engine) as session:
                return orders.create_shipment(session, request.quote_number, request.seq, today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def record_shipment_step(self, request: RecordShipmentStepInput) -> ShipmentState:
        try:
            with transaction(self.engine) as session:
                return orders.record_shipment_step(session, request.shipment_number, request.step,
                                                   actor=request.actor, tracking_ref=request.tracking_ref)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def invoice_order(self, request: InvoiceInput) -> InvoiceState:
        try:
            with transaction(self.engine) as session:
                return orders.invoice_order(session, request.quote_number, request.key, today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def order_balance(self, request: QuoteRef) -> OrderBalance:
        try:
            with transaction(self.engine) as session:
                return orders.order_balance(session, request.quote_number)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def cancel_order(self, request: CancelOrderInput) -> CancelOrderResult:
        try:
            with transaction(self.engine) as session:
                return orders.cancel_order(session, request.quote_number, actor=request.actor,
                                           reason=request.reason, today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def cancel_backorder(self, request: CancelBackorderInput) -> CancelBackorderResult:
        try:
            with transaction(self.engine) as session:
                return orders.cancel_backorder(session, request.quote_number, actor=request.actor, key=request.key,
                                               today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def amend_order(self, request: AmendOrderInput) -> AmendOrderResult:
        """models.orders.amend_order in one transaction: the lines changed, surplus released, the credit note for
        what was invoiced beyond the new quantities, the credit check on an increase, the reservation pass, the
        invoice of ordered-policy increases and the customer's notice. Idempotent by the request's key.

        An amendment whose only obstacle is the quote approval policy is not a failure: it is answered with
        `approval_needed` (and nothing written), and the workflow sends it to approval; once approved it comes
        back with `approval_key` and the policy is not asked again."""
        try:
            with transaction(self.engine) as session:
                return orders.amend_order(session, request.quote_number, request.command, key=request.key,
                                          today=_today(), invoice_key=request.invoice_key,
                                          public_url=self.public_url, approval_key=request.approval_key,
                                          approved_by=request.approved_by)
        except orders.AmendmentNeedsApproval as asked:
            # The transaction above rolled back; this one only reads the order as it stands.
            with read_only_session(self.engine) as session:
                return orders.unapplied_amendment(session, request.quote_number, asked.approval)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def notify_order(self, request: OrderNotifyInput) -> None:
        """Queue the e-mails about an order event in the outbox (models.orders.queue_order_notice): the customer
        and the rep (message keys `<message_key>:customer` and `<message_key>:<rep>`), or for a group's event
        (collections) every member of the group (`<message_key>:<username>`); a retry adds nothing."""
        try:
            with transaction(self.engine) as session:
                orders.queue_order_notice(session, request.quote_number, message_key=request.message_key,
                                          event=request.event, detail=request.detail, public_url=self.public_url,
                                          also_to=request.also_to)
        except REFUSALS as err:
            raise _refusal(err) from err

    # Folded steps (models/orders.py "folded steps"): what the workflow asked for in several activities in a row.

    @activity.defn
    def accept_order(self, request: QuoteRef) -> AcceptOrderResult:
        """check_credit, then reserve_order when within the limit, in one transaction."""
        try:
            with transaction(self.engine) as session:
                return orders.accept_order(session, request.quote_number)
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def confirm_order(self, request: ConfirmOrderInput) -> ConfirmOrderResult:
        """set_order_status(confirmed), the confirmation notice, invoice_order for ordered-policy lines with its
        notice, and order_balance, in one transaction."""
        try:
            with transaction(self.engine) as session:
                return orders.confirm_order(session, request.quote_number, actor=request.actor,
                                            reason=request.reason, invoice_key=request.invoice_key,
                                            public_url=self.public_url, today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err

    @activity.defn
    def settle_order(self, request: SettleOrderInput) -> SettleOrderResult:
        """The shipment notices, invoice_order with its notice, order_balance and the moves to delivered and done,
        in one transaction."""
        try:
            with transaction(self.engine) as session:
                return orders.settle_order(session, request.quote_number, notices=request.notices,
                                           invoice_key=request.invoice_key, rest_invoice_key=request.rest_invoice_key,
                                           close=request.close, public_url=self.public_url, today=_today())
        except REFUSALS as err:
            raise _refusal(err) from err
