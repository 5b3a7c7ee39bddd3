"""The customer portal: the pages of a customer's contact person (a user with a customer_id).

/portal lists their customer's quotes and orders (once sent to them) with their status, and their invoices with
what is due; /portal/quotes/{number} shows the quotation or order confirmation (the same document the printable
page shows) with the customer's answers the status allows: accept or decline a sent quote, choose how to go on
when stock is short, withdraw while the order waits on credit. The answers go through the same service as the JSON
API and the staff's order pages (api/quotes.py quote_action), as Actor(<username>, ("customer",)); each form carries
the session's CSRF token and answers with a 303 back and a flash message saying what happened or why not.

Who sees what is decided by the viewer (models/portal.py ContactViewer): another customer's quote is "not found".
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api import quotes as service
from api.deps import CsrfProtected, PortalUser, SessionDep, SettingsDep
from api.health import get_temporal_client
from api.inbox import Refusal
from api.order_pages import CHOICES, ORDER_DOCUMENT_STATUSES, _redirect, _render, _text
from models import order_views as views
from models import portal
from models.masterdata import Customer
from models.users import User
from ui import flash, humanize

router = APIRouter(include_in_schema=False)

HOME = "/portal"
# How a status reads to the customer where the staff's word would not say what it means for them.
STATUS_WORDS = {"sent": "Awaiting your answer", "credit_hold": "On hold", "awaiting_customer": "Awaiting your choice",
                "confirmed": "Confirmed", "delivered": "Delivered", "done": "Completed"}
IN_PROGRESS = ("credit_hold", "awaiting_customer", "confirmed", "delivered")
# Form action -> (service action, words for success and refusal).
ANSWERS = {"accept": ("accept", "Accepted", "Not accepted"), "decline": ("cancel", "Declined", "Not declined"),
           "cancel": ("cancel", "Cancelled", "Not cancelled"),
           "backorder-choice": ("backorder", "Choice recorded", "Choice not recorded")}
REASON_MAX = 500  # sales_order.cancel_reason


def _viewer(request: Request, user: User) -> portal.ContactViewer:
    return service.viewer_of(request, user)  # type: ignore[return-value]  (PortalUser lets in contacts only)


def _page(request: Request, session: Session, name: str, context: dict, code: int = 200) -> HTMLResponse:
    context.setdefault("active_nav", "portal")
    context.setdefault("status_words", STATUS_WORDS)
    return _render(request, session, name, context, code)


def _not_found(request: Request, session: Session, number: str) -> HTMLResponse:
    return _page(request, session, "pages/not_found.html",
                 {"title": "Not found", "what": "quote", "ident": number[:40], "back": HOME,
                  "back_label": "Back to your orders"}, code=status.HTTP_404_NOT_FOUND)


@router.get("/portal", response_class=HTMLResponse, name="portal")
def portal_home(request: Request, session: SessionDep, user: PortalUser):
    viewer = _viewer(request, user)
    listing = views.search_orders(session, viewer, limit=views.MAX_PAGE)
    context = {
        "title": "Your orders",
        "customer": session.get(Customer, viewer.customer_id),
        "listing": listing,
        "to_answer": listing.counts.get("sent", 0) + listing.counts.get("awaiting_customer", 0),
        "in_progress": sum(listing.counts.get(s, 0) for s in IN_PROGRESS),
        "invoices": portal.customer_invoices(session, viewer.customer_id),
        "amount_due": portal.amount_due(session, viewer.customer_id),
    }
    return _page(request, session, "portal/index.html", context)


def _read(session: Session, viewer: portal.ContactViewer, number: str) -> views.OrderDetail | None:
    try:
        return views.order_detail(session, viewer, number)
    finally:
        service.finish_read(session)


@router.get("/portal/quotes/{number}", response_class=HTMLResponse, name="portal_quote")
async def portal_quote(number: str, request: Request, session: SessionDep, user: PortalUser):
    detail = await run_in_threadpool(_read, session, _viewer(request, user), number)
    if detail is None:
        return _not_found(request, session, number)
    o = detail.order
    context = {
        "title": f"{o.number} · {detail.customer.name}",
        "d": detail,
        "o": o,
        "is_order": o.status in ORDER_DOCUMENT_STATUSES,
        "actions": portal.contact_actions(o.status),
        "choices": CHOICES,
    }
    return _page(request, session, "portal/quote.html", context)


@router.get("/portal/quotes/{number}/document", response_class=HTMLResponse, name="portal_document")
def portal_document(number: str, request: Request, session: SessionDep, user: PortalUser):
    detail = views.order_detail(session, _viewer(request, user), number)
    if detail is None:
        return _not_found(request, session, number)
    o = detail.order
    is_order = o.status in ORDER_DOCUMENT_STATUSES
    context = {"title": f"{'Order confirmation' if is_order else 'Quotation'} {o.number}", "d": detail, "o": o,
               "is_order": is_order, "back_url": f"{HOME}/quotes/{o.number}"}
    return _render(request, session, "orders/document.html", context)


@router.post("/portal/quotes/{number}/{answer}", dependencies=[CsrfProtected], name="portal_answer")
async def portal_answer(number: str, answer: str, request: Request, session: SessionDep, user: PortalUser,
                        settings: SettingsDep):
    """accept, decline (a sent quote, with a reason), cancel (an order waiting on credit or on the customer's
    choice, with a reason) or backorder-choice; 303 back to the quote with what happened or why not."""
    viewer = _viewer(request, user)
    posted = await request.form()
    page = f"{HOME}/quotes/{number}"
    if answer not in ANSWERS:
        flash(request, f"Unknown answer “{answer[:40]}”.", "error")
        return _redirect(page)
    action, done, failed = ANSWERS[answer]
    reason = _text(posted, "reason", REASON_MAX)
    choice = _text(posted, "choice", 20)
    if action == "cancel" and not reason:
        flash(request, f"{failed}: please tell us why, so your contact can follow up.", "error")
        return _redirect(page)
    if action == "backorder" and choice not in CHOICES:
        flash(request, f"{failed}: choose how to go on with the missing stock.", "error")
        return _redirect(page)
    version = _text(posted, "expected_version", 12)
    try:
        new_status = await service.quote_action(
            session, lambda: get_temporal_client(request, settings), viewer, number, action, comment=reason,
            expected_version=int(version) if version.isdigit() else None, choice=choice or None)
    except Refusal as refusal:
        if refusal.status_code == status.HTTP_404_NOT_FOUND:
            return _not_found(request, session, number)
        flash(request, f"{failed}: {number}: {refusal.message}", "error")
        return _redirect(page)
    flash(request, f"{done}: {number} is now {STATUS_WORDS.get(new_status, humanize(new_status)).lower()}.",
          "success")
    return _redirect(page)
