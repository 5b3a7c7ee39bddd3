"""Quotes and orders as pages: the list with status tabs and counts, filters, sorting and paging; the quote form
(new and edit) with server-side messages next to each field; the order page (lines, totals, margin, credit
exposure, the process timeline, approval tasks, shipments, invoices, payments, and the actions the status and
the viewer's roles allow); a printable document; the warehouse's shipment pages with a scan field; and the payment
form for finance, with the upload of a bank statement (api/routes/imports.py) and its result line by line.

Every form posts with the session's CSRF token. The actions go through the service in api/quotes.py, the same
code as the JSON API, and answer with a 303 back and a flash message saying what happened or why it was refused;
a form with bad input is shown again (422) with the reasons next to the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import UploadFile

from api import quotes as service
from api.deps import CsrfProtected, PageUser, SessionDep, SettingsDep, current_roles
from api.health import get_temporal_client
from api.inbox import Refusal
from api.pages import DEFAULT_PER_PAGE, PER_PAGE_CHOICES, Listing
from api.routes.imports import MAX_IMPORT_BYTES, PaymentImportOutcome, import_payment_file
from models.csv_import import ImportFailed
from models import order_views as views
from models.inbox import sla_state
from models.users import User
from ui import TEMPLATES, flash, humanize

router = APIRouter(include_in_schema=False)

BLANK_ROWS = 3
MAX_FORM_ROWS = service.MAX_LINES
EDITABLE = ("draft", "changes_requested")
CANCELLABLE = ("draft", "pending_approval", "changes_requested", "sent", "credit_hold", "awaiting_customer",
               "confirmed")
STATUS_KIND = {
    "draft": "neutral", "pending_approval": "warn", "changes_requested": "warn", "sent": "info",
    "credit_hold": "danger", "awaiting_customer": "warn", "confirmed": "info", "delivered": "ok", "done": "ok",
    "rejected": "danger", "expired": "neutral", "cancelled": "neutral",
}
ACTION_WORDS = {"submit": ("Submitted", "Not submitted"), "accept": ("Accepted", "Not accepted"),
                "cancel": ("Cancelled", "Not cancelled"), "backorder": ("Choice recorded", "Choice not recorded")}
CHOICES = {"ship_available": "Ship what is available now, backorder the rest",
           "ship_complete": "Wait and ship everything together",
           "cancel_rest": "Ship what is available now and cancel the rest"}
# While a confirmed order waits for missing stock, the one choice left is to stop waiting for it.
WAITING_CHOICES = {"cancel_rest": "Cancel what is still missing (what is reserved still ships)"}
STEP_WORDS = {"picked": "Picked", "packed": "Packed", "shipped": "Shipped"}
# The printable document is an order confirmation in these statuses, a quotation otherwise (the portal's too).
ORDER_DOCUMENT_STATUSES = ("confirmed", "delivered", "done", "credit_hold", "awaiting_customer")


def _viewer(request: Request, user: User) -> views.OrderViewer:
    return views.OrderViewer(user.username, frozenset(current_roles(request)))


def _render(request: Request, session: Session, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    """End the read transaction before rendering (on SQLite it holds the write lock: BEGIN IMMEDIATE); the rows
    are detached first so the template reads their loaded values without new queries."""
    user = getattr(request.state, "user", None)
    if user is not None:
        _ = user.full_name  # loads an instance the authentication's commit expired
    session.expunge_all()
    session.commit()
    context.setdefault("status_kind", STATUS_KIND)
    return TEMPLATES.TemplateResponse(request=request, name=name, context=context, status_code=code)


def _not_found(request: Request, session: Session, what: str, ident: str, back: str, label: str, nav: str):
    return _render(request, session, "pages/not_found.html",
                   {"title": "Not found", "what": what, "ident": ident[:40], "back": back, "back_label": label,
                    "active_nav": nav}, code=status.HTTP_404_NOT_FOUND)


def _forbidden(request: Request, session: Session, what: str) -> HTMLResponse:
    return _render(request, session, "orders/forbidden.html", {"title": "Not allowed", "what": what,
                                                                "active_nav": "orders"},
                   code=status.HTTP_403_FORBIDDEN)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _client_source(request: Request, settings):
    return lambda: get_temporal_client(request, settings)


def _int(value: str | None, default: int, low: int = 1, high: int = 1_000_000) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(max(number, low), high)


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value and value.strip() else None
    except ValueError:
        return None


def _text(form, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


# ------------------------------------------------------------------------------------------- the list


@router.get("/orders", response_class=HTMLResponse, name="orders")
def orders_list(request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    query = request.query_params
    wanted_status = query.get("status") if query.get("status") in views.STATUSES else None
    form = {k: (query.get(k) or "").strip()[:views.MAX_TEXT] for k in ("customer", "rep", "date_from", "date_to", "q")}
    filters = views.OrderFilters(customer=form["customer"] or None, rep=form["rep"] or None,
                                 date_from=_date(form["date_from"]), date_to=_date(form["date_to"]),
                                 text=form["q"] or None)
    for key in ("date_from", "date_to"):
        if form[key] and _date(form[key]) is None:
            form[key] = ""  # a malformed date typed into the address bar is dropped, not an error page
    sort = views.normal_sort(query.get("sort"))
    per_page = _int(query.get("per_page"), DEFAULT_PER_PAGE)
    per_page = per_page if per_page in PER_PAGE_CHOICES else DEFAULT_PER_PAGE
    page_no = _int(query.get("page"), 1)
    result = views.search_orders(session, viewer, status=wanted_status, filters=filters, sort=sort,
                                 offset=(page_no - 1) * per_page, limit=per_page)
    filter_params = {k: v for k, v in form.items() if v}
    params = {"status": wanted_status, **filter_params}
    listing = Listing(request.url.path, params, result.total, result.offset // per_page + 1, per_page, result.sort,
                      views.DEFAULT_SORT, rows=result.rows)
    tabs = [{"key": key, "label": "All" if key == "all" else humanize(key), "count": result.counts.get(key, 0),
             "current": (wanted_status or "all") == key,
             "url": "/orders" + ("?" + urlencode({**({"status": key} if key != "all" else {}), **filter_params})
                                 if key != "all" or filter_params else "")}
            for key in ("all", *views.STATUSES)
            if key in ("all", wanted_status) or result.counts.get(key, 0)]
    context = {
        "title": "Orders",
        "active_nav": "orders",
        "listing": listing,
        "tabs": tabs,
        "form": form,
        "status": wanted_status,
        "filtered": bool(filter_params),
        "reps": views.reps(session, viewer),
        "per_page_choices": PER_PAGE_CHOICES,
        "can_create": viewer.sells,
        "viewer": viewer,
    }
    return _render(request, session, "orders/list.html", context)


# ------------------------------------------------------------------------------------------- the quote form


@dataclass
class QuoteForm:
    """What the form shows: the values as typed, the messages next to the fields, the lines as rows."""

    values: dict[str, str] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def error(self, name: str) -> str:
        return self.errors.get(name, "")

    def line_error(self, index: int) -> list[tuple[str, str]]:
        prefix = f"lines[{index}]"
        return [(k, v) for k, v in self.errors.items() if k == prefix or k.startswith(prefix + ".")]


LINE_FIELDS = ("sku", "quantity", "discount_percent", "unit_price")
HEAD_FIELDS = ("customer_code", "customer_ref", "valid_until", "order_discount_percent", "backorder_preference",
               "warehouse_code", "note", "comment", "expected_version")


def _rows_from(form) -> list[dict[str, Any]]:
    """The line rows as typed; wholly blank rows are dropped, so row i is lines[i] in every message."""
    indices = sorted({int(k.split("-")[1]) for k in form.keys()
                      if k.startswith("lines-") and k.count("-") >= 2 and k.split("-")[1].isdigit()})
    rows = []
    for i in indices[:MAX_FORM_ROWS * 2]:
        row = {name: _text(form, f"lines-{i}-{name}", 60) for name in LINE_FIELDS}
        row["drop_ship"] = form.get(f"lines-{i}-drop_ship") in ("on", "1", "true")
        if any(row[name] for name in LINE_FIELDS):
            rows.append(row)
    return rows


def _blank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows + [{"sku": "", "quantity": "", "discount_percent": "", "unit_price": "", "drop_ship": False}
                   for _ in range(BLANK_ROWS)]


def _line_data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    data = []
    for row in rows:
        line: dict[str, Any] = {"sku": row["sku"], "quantity": row["quantity"] or None,
                                "discount_percent": row["discount_percent"] or "0", "drop_ship": row["drop_ship"]}
        if row["unit_price"]:
            line["unit_price"] = row["unit_price"]
        data.append(line)
    return data


def _pydantic_errors(err: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for e in err.errors(include_url=False, include_context=False):
        name = service.field_name([p for p in e["loc"]])
        found.setdefault(name or "form", e["msg"])
    return found


def _form_context(request: Request, viewer: views.OrderViewer, session: Session, form: QuoteForm, *,
                  mode: str, order: Any = None) -> dict[str, Any]:
    return {
        "title": (f"Amend {order.number}" if mode == "amend" else f"Edit {order.number}") if order is not None
        else "New quote",
        "active_nav": "orders",
        "form": form,
        "rows": _blank_rows(form.rows),
        "mode": mode,
        "order": order,
        "customers": views.customers_for_form(session) if mode == "new" else [],
        "preferences": ("ship_available", "ship_complete", "ask"),
        "viewer": viewer,
    }


@router.get("/orders/new", response_class=HTMLResponse, name="order_new")
def order_new(request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    if not viewer.sells:
        return _forbidden(request, session, "create quotes (sales reps and sales managers do)")
    form = QuoteForm(values={"customer_code": (request.query_params.get("customer") or "")[:20]})
    return _render(request, session, "orders/form.html", _form_context(request, viewer, session, form, mode="new"))


@router.post("/orders/new", dependencies=[CsrfProtected], name="order_create")
async def order_create(request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    viewer = _viewer(request, user)
    if not viewer.sells:
        return _forbidden(request, session, "create quotes (sales reps and sales managers do)")
    posted = await request.form()
    values = {name: _text(posted, name, 1000) for name in HEAD_FIELDS}
    form = QuoteForm(values=values, rows=_rows_from(posted))
    data: dict[str, Any] = {"customer_code": values["customer_code"], "customer_ref": values["customer_ref"] or None,
                            "lines": _line_data(form.rows), "channel": "web", "note": values["note"],
                            "order_discount_percent": values["order_discount_percent"] or "0",
                            "valid_until": values["valid_until"] or None,
                            "backorder_preference": values["backorder_preference"] or None,
                            "warehouse_code": values["warehouse_code"] or None}
    try:
        body = service.QuoteCreateIn.model_validate(data)
        number = await service.create_quote(session, _client_source(request, settings), settings, viewer, body)
    except ValidationError as err:
        form.errors = _pydantic_errors(err)
    except service.FieldProblems as problems:
        form.errors = problems.as_dict()
    except Refusal as refusal:
        form.message = refusal.message
        if refusal.reason == "DuplicateCustomerRef":
            form.errors["customer_ref"] = refusal.message
        context = _form_context(request, viewer, session, form, mode="new")
        return _render(request, session, "orders/form.html", context, code=refusal.status_code)
    else:
        flash(request, f"Quote {number} created.", "success")
        return _redirect(f"/orders/{number}")
    form.message = "The quote was not saved: please correct the fields marked below."
    return _render(request, session, "orders/form.html", _form_context(request, viewer, session, form, mode="new"),
                   code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _edit_form(detail: views.OrderDetail) -> QuoteForm:
    o = detail.order
    rows = [{"sku": r.sku, "quantity": _plain(r.line.quantity), "discount_percent": _plain(r.line.discount_percent),
             "unit_price": _plain(r.line.unit_price) if r.line.manual_price else "", "drop_ship": r.line.drop_ship}
            for r in detail.lines]
    values = {"customer_code": detail.customer.code, "customer_ref": o.customer_ref or "",
              "valid_until": o.valid_until.isoformat(), "order_discount_percent": _plain(o.order_discount_percent),
              "backorder_preference": getattr(o.backorder_preference, "value", o.backorder_preference),
              "expected_version": str(o.version), "note": o.note, "comment": ""}
    return QuoteForm(values=values, rows=rows)


def _plain(value: Decimal | None) -> str:
    """A Decimal as a person types it: 12.500 -> "12.5", 300.000 -> "300"."""
    if value is None:
        return ""
    return format(value.normalize(), "f")


# Editing a quote and amending an order share the form and these steps; `what` names the work for refusals.


def _not_found_order(request: Request, session: Session, number: str):
    return _not_found(request, session, "quote", number, "/orders", "Back to the orders", "orders")


def _open_for_change(request: Request, session: Session, viewer: views.OrderViewer, number: str, what: str,
                     statuses, closed: str):
    """(the order's detail, None) when the viewer may `what` it in its status, else (None, the page to answer)."""
    detail = views.order_detail(session, viewer, number)
    if detail is None:
        return None, _not_found_order(request, session, number)
    if not viewer.sells:
        return None, _forbidden(request, session, f"{what} (sales reps and sales managers do)")
    if detail.order.status not in statuses:
        flash(request, closed.format(number=number, status=humanize(detail.order.status).lower()), "warning")
        session.commit()
        return None, _redirect(f"/orders/{number}")
    return detail, None


def _refusal_page(request: Request, session: Session, viewer: views.OrderViewer, number: str, refusal: Refusal,
                  what: str):
    """The page for a refusal that is not about the form (no such order, not allowed), else None."""
    if refusal.status_code == status.HTTP_404_NOT_FOUND:
        return _not_found_order(request, session, number)
    if refusal.status_code == status.HTTP_403_FORBIDDEN and not viewer.sells:
        return _forbidden(request, session, f"{what} (sales reps and sales managers do)")
    return None


def _change_context(request: Request, viewer: views.OrderViewer, session: Session, form: QuoteForm,
                    detail: views.OrderDetail, mode: str) -> dict[str, Any]:
    context = _form_context(request, viewer, session, form, mode=mode, order=detail.order)
    context["customer"] = detail.customer
    return context


async def _form_again(request: Request, session: Session, viewer: views.OrderViewer, number: str, form: QuoteForm,
                      mode: str, code: int):
    """The form once more, with what was posted and why it was not taken."""
    detail = await run_in_threadpool(views.order_detail, session, viewer, number)
    if detail is None:
        return _not_found_order(request, session, number)
    return _render(request, session, "orders/form.html", _change_context(request, viewer, session, form, detail,
                                                                         mode), code=code)


@router.get("/orders/{number}/edit", response_class=HTMLResponse, name="order_edit")
def order_edit(number: str, request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    detail, refused = _open_for_change(request, session, viewer, number, "edit quotes", EDITABLE,
                                       "Quote {number} is {status}: it can no longer be edited.")
    if refused is not None:
        return refused
    return _render(request, session, "orders/form.html",
                   _change_context(request, viewer, session, _edit_form(detail), detail, "edit"))


@router.post("/orders/{number}/edit", dependencies=[CsrfProtected], name="order_update")
async def order_update(number: str, request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    viewer = _viewer(request, user)
    posted = await request.form()
    values = {name: _text(posted, name, 2000) for name in HEAD_FIELDS}
    form = QuoteForm(values=values, rows=_rows_from(posted))
    version = values["expected_version"]
    data: dict[str, Any] = {"lines": _line_data(form.rows), "customer_ref": values["customer_ref"] or None,
                            "order_discount_percent": values["order_discount_percent"] or "0",
                            "valid_until": values["valid_until"] or None,
                            "backorder_preference": values["backorder_preference"] or None,
                            "expected_version": int(version) if version.isdigit() else None,
                            "comment": values["comment"]}
    try:
        body = service.QuotePatchIn.model_validate(data)
        result = await service.edit_quote(session, _client_source(request, settings), viewer, number, body)
    except ValidationError as err:
        form.errors = _pydantic_errors(err)
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        form.message = "The quote was not changed: please correct the fields marked below."
    except service.FieldProblems as problems:
        form.errors = problems.as_dict()
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        form.message = "The quote was not changed: please correct the fields marked below."
    except Refusal as refusal:
        if (page := _refusal_page(request, session, viewer, number, refusal, "edit quotes")) is not None:
            return page
        form.message = f"The quote was not changed: {refusal.message}"
        code = refusal.status_code
    else:
        extra = " and sent back to the approvers" if result.resubmitted else ""
        flash(request, f"Quote {number} saved (version {result.state.version}){extra}.", "success")
        return _redirect(f"/orders/{number}")
    return await _form_again(request, session, viewer, number, form, "edit", code)


# ------------------------------------------------------------------------------------------- amend an order
# A confirmed order's lines change through the same form (mode "amend": only the lines and a comment count); the
# workflow's amend_order Update decides, and its refusals (below what shipped, over the credit limit) come back
# next to the form.

AMENDABLE = ("confirmed", "awaiting_customer")


def _amend_form(detail: views.OrderDetail) -> QuoteForm:
    form = _edit_form(detail)
    # What the order still stands for: a removed line (0) is not offered again, a cancelled rest is not counted.
    form.rows = [dict(row, quantity=_plain(r.line.quantity - r.line.qty_cancelled))
                 for row, r in zip(form.rows, detail.lines) if r.line.quantity - r.line.qty_cancelled > 0]
    return form


@router.get("/orders/{number}/amend", response_class=HTMLResponse, name="order_amend")
def order_amend(number: str, request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    detail, refused = _open_for_change(request, session, viewer, number, "amend orders", AMENDABLE,
                                       "Order {number} is {status}: only a confirmed order can be amended.")
    if refused is not None:
        return refused
    return _render(request, session, "orders/form.html",
                   _change_context(request, viewer, session, _amend_form(detail), detail, "amend"))


@router.post("/orders/{number}/amend", dependencies=[CsrfProtected], name="order_amend_save")
async def order_amend_save(number: str, request: Request, session: SessionDep, user: PageUser,
                           settings: SettingsDep):
    viewer = _viewer(request, user)
    posted = await request.form()
    values = {name: _text(posted, name, 2000) for name in HEAD_FIELDS}
    form = QuoteForm(values=values, rows=_rows_from(posted))
    version = values["expected_version"]
    data: dict[str, Any] = {"lines": _line_data(form.rows), "comment": values["comment"],
                            "expected_version": int(version) if version.isdigit() else None}
    problem = "The order was not amended: please correct the fields marked below."
    try:
        body = service.QuoteAmendIn.model_validate(data)
        state = await service.amend_order(session, _client_source(request, settings), viewer, number, body)
    except ValidationError as err:
        form.errors, form.message, code = _pydantic_errors(err), problem, status.HTTP_422_UNPROCESSABLE_CONTENT
    except service.FieldProblems as problems:
        form.errors, form.message, code = problems.as_dict(), problem, status.HTTP_422_UNPROCESSABLE_CONTENT
    except Refusal as refusal:
        if (page := _refusal_page(request, session, viewer, number, refusal, "amend orders")) is not None:
            return page
        form.message = f"The order was not amended: {refusal.message}"
        code = refusal.status_code
    else:
        if state.pending_amendment is not None:
            flash(request, f"Order {number}: the amendment awaits approval ({state.pending_amendment.reason}). "
                           "Nothing changes until an approver agrees; you will hear the outcome.", "info")
        else:
            flash(request, f"Order {number} amended (version {state.version}): total {state.amount_total}.",
                  "success")
        return _redirect(f"/orders/{number}")
    return await _form_again(request, session, viewer, number, form, "amend", code)


# ------------------------------------------------------------------------------------------- the order page


def _actions(detail: views.OrderDetail, viewer: views.OrderViewer) -> dict[str, bool]:
    """The buttons to show; the workflow's validators still decide (these only avoid offering what they refuse):
    the quote's own rep or the sales office edits, submits and cancels; any sales rep records acceptance."""
    s = detail.order.status
    sells = viewer.sells
    owns = sells and (detail.order.rep == viewer.username or viewer.has("sales-manager"))
    return {
        "edit": owns and s in EDITABLE,
        "amend": owns and s in AMENDABLE,
        "submit": owns and s == "draft",
        "accept": sells and s == "sent",
        "backorder": sells and (s == "awaiting_customer" or (s == "confirmed" and _waits_for_stock(detail))),
        "cancel": owns and s in CANCELLABLE,
        "payment": viewer.has("finance") and detail.amount_due > 0,
    }


def _waits_for_stock(detail: views.OrderDetail) -> bool:
    """Some stock line is neither delivered, cancelled nor reserved: a backorder the customer may drop."""
    return any(not r.line.drop_ship and r.qty_open > r.line.qty_reserved for r in detail.lines)


def _choices(detail: views.OrderDetail) -> dict[str, str]:
    return CHOICES if detail.order.status == "awaiting_customer" else WAITING_CHOICES


@router.get("/orders/{number}", response_class=HTMLResponse, name="order_detail")
async def order_page(number: str, request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    viewer = _viewer(request, user)

    def read():
        try:
            return views.order_detail(session, viewer, number)
        finally:
            service.finish_read(session)

    detail = await run_in_threadpool(read)
    if detail is None:
        return _not_found_order(request, session, number)
    view, note = await service.order_view(_client_source(request, settings), detail.order.workflow_id)
    now = datetime.now(UTC)
    context = {
        "title": f"{detail.order.number} · {detail.customer.name}",
        "active_nav": "orders",
        "d": detail,
        "o": detail.order,
        "view": view,
        "timeline_note": note,
        "actions": _actions(detail, viewer),
        "choices": _choices(detail),
        "sla": {t.task_key: sla_state(t, now) for t in detail.tasks},
        "viewer": viewer,
    }
    return _render(request, session, "orders/detail.html", context)


@router.get("/orders/{number}/document", response_class=HTMLResponse, name="order_document")
def order_document(number: str, request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    detail = views.order_detail(session, viewer, number)
    if detail is None:
        return _not_found_order(request, session, number)
    is_order = detail.order.status in ORDER_DOCUMENT_STATUSES
    context = {"title": f"{'Order confirmation' if is_order else 'Quotation'} {detail.order.number}", "d": detail,
               "o": detail.order, "is_order": is_order, "today": datetime.now(UTC).date()}
    return _render(request, session, "orders/document.html", context)


@router.post("/orders/{number}/{action}", dependencies=[CsrfProtected], name="order_action")
async def order_action(number: str, action: str, request: Request, session: SessionDep, user: PageUser,
                       settings: SettingsDep):
    """submit, accept, cancel or backorder-choice from the order page; 303 back with what happened or why not."""
    viewer = _viewer(request, user)
    posted = await request.form()
    page = f"/orders/{number}"
    kind = "backorder" if action == "backorder-choice" else action
    if kind not in ACTION_WORDS:
        flash(request, f"Unknown action “{action[:40]}”.", "error")
        return _redirect(page)
    done, failed = ACTION_WORDS[kind]
    version = _text(posted, "expected_version", 12)
    choice = _text(posted, "choice", 20)
    if kind == "backorder" and choice not in CHOICES:
        flash(request, f"{failed}: choose how to go on with the missing stock.", "error")
        return _redirect(page)
    try:
        new_status = await service.quote_action(
            session, _client_source(request, settings), viewer, number, kind, comment=_text(posted, "comment", 2000),
            expected_version=int(version) if version.isdigit() else None, choice=choice or None)
    except Refusal as refusal:
        if refusal.status_code == status.HTTP_404_NOT_FOUND:
            return _not_found_order(request, session, number)
        flash(request, f"{failed}: {number}: {refusal.message}", "error")
        return _redirect(page)
    flash(request, f"{done}: {number} is now {humanize(new_status).lower()}.", "success")
    return _redirect(page)


# ------------------------------------------------------------------------------------------- the warehouse


def _is_warehouse(viewer: views.OrderViewer) -> bool:
    return viewer.has("warehouse")


@router.get("/warehouse/shipments", response_class=HTMLResponse, name="warehouse_shipments")
def warehouse_shipments(request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    if not _is_warehouse(viewer):
        return _forbidden(request, session, "work shipments (the warehouse does)")
    rows = views.open_shipments(session)
    return _render(request, session, "orders/shipments.html",
                   {"title": "Open shipments", "active_nav": "warehouse", "rows": rows})


def _scan_context(row: views.ShipmentRow, scanned: list[str], error: str = "") -> dict[str, Any]:
    skus, unknown, missing = views.match_scans(row, scanned)
    counts = {sku: skus.count(sku) for sku in set(skus)}
    return {"title": f"Shipment {row.shipment.number}", "active_nav": "warehouse", "row": row,
            "scanned": [code for i, code in enumerate(scanned) if i not in {j for j, _ in unknown}],
            "counts": counts, "missing": missing, "scan_error": error, "next_step": row.next_step,
            "steps": STEP_WORDS}


@router.get("/warehouse/shipments/{shipment_number}", response_class=HTMLResponse, name="warehouse_shipment")
def warehouse_shipment(shipment_number: str, request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    if not _is_warehouse(viewer):
        return _forbidden(request, session, "work shipments (the warehouse does)")
    row = views.shipment_row(session, shipment_number)
    if row is None:
        return _not_found(request, session, "shipment", shipment_number, "/warehouse/shipments",
                          "Back to the open shipments", "warehouse")
    return _render(request, session, "orders/shipment.html", _scan_context(row, []))


@router.post("/warehouse/shipments/{shipment_number}/scan", dependencies=[CsrfProtected], name="warehouse_scan")
async def warehouse_scan(shipment_number: str, request: Request, session: SessionDep, user: PageUser):
    """One scan (a scanner types the code and Enter): the page again, with the code added to the scanned list
    (kept in hidden fields, so nothing is stored until the step is confirmed) or the reason it was refused."""
    viewer = _viewer(request, user)
    if not _is_warehouse(viewer):
        return _forbidden(request, session, "work shipments (the warehouse does)")
    posted = await request.form()
    row = await run_in_threadpool(views.shipment_row, session, shipment_number)
    if row is None:
        return _not_found(request, session, "shipment", shipment_number, "/warehouse/shipments",
                          "Back to the open shipments", "warehouse")
    scanned = [c.strip()[:60] for c in posted.getlist("scanned") if isinstance(c, str) and c.strip()][:500]
    code = _text(posted, "code", 60)
    error = ""
    if code:
        if code.casefold() in row.codes():
            scanned.append(code)
        else:
            error = f"“{code}” is not on this shipment."
    context = _scan_context(row, scanned, error)
    return _render(request, session, "orders/shipment.html", context,
                   code=status.HTTP_422_UNPROCESSABLE_CONTENT if error else 200)


@router.post("/warehouse/shipments/{shipment_number}/step", dependencies=[CsrfProtected], name="warehouse_step")
async def warehouse_step(shipment_number: str, request: Request, session: SessionDep, user: PageUser,
                         settings: SettingsDep):
    viewer = _viewer(request, user)
    if not _is_warehouse(viewer):
        return _forbidden(request, session, "work shipments (the warehouse does)")
    posted = await request.form()
    page = f"/warehouse/shipments/{shipment_number}"
    scanned = [c.strip()[:60] for c in posted.getlist("scanned") if isinstance(c, str) and c.strip()][:500]
    step = _text(posted, "step", 20)
    try:
        body = service.ShipmentStepIn(step=step, scanned=scanned, tracking_ref=_text(posted, "tracking_ref", 60))
        state = await service.shipment_step(session, _client_source(request, settings), viewer, shipment_number,
                                            body)
    except ValidationError as err:
        flash(request, f"Not recorded: {'; '.join(_pydantic_errors(err).values())}", "error")
        return _redirect(page)
    except service.FieldProblems as problems:
        row = await run_in_threadpool(views.shipment_row, session, shipment_number)
        if row is None:
            return _redirect("/warehouse/shipments")
        context = _scan_context(row, scanned, "; ".join(m for _, m in problems.problems))
        return _render(request, session, "orders/shipment.html", context, code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    except Refusal as refusal:
        if refusal.status_code == status.HTTP_404_NOT_FOUND:
            return _not_found(request, session, "shipment", shipment_number, "/warehouse/shipments",
                              "Back to the open shipments", "warehouse")
        flash(request, f"Not recorded: {shipment_number}: {refusal.message}", "error")
        return _redirect(page)
    flash(request, f"{STEP_WORDS.get(state.status, humanize(state.status))}: {state.shipment_number}.", "success")
    return _redirect("/warehouse/shipments" if state.status == "shipped" else page)


# ------------------------------------------------------------------------------------------- payments


PAYMENT_FIELDS = ("reference", "customer_code", "amount", "payment_date", "invoice_number")


def _payment_context(session: Session, values: dict[str, str], errors: dict[str, str], message: str = "", *,
                     imported: PaymentImportOutcome | None = None, import_failed: ImportFailed | None = None,
                     import_message: str = "", filename: str = ""):
    customer = views.customer_by_code(session, values.get("customer_code", ""))
    return {"title": "Record a payment", "active_nav": "orders", "values": values, "errors": errors,
            "message": message, "customers": views.customers_for_form(session),
            "invoices": views.open_invoices(session, customer.id if customer else None),
            "imported": imported, "import_failed": import_failed, "import_message": import_message,
            "filename": filename}


def _today_values() -> dict[str, str]:
    return {**{name: "" for name in PAYMENT_FIELDS}, "payment_date": datetime.now(UTC).date().isoformat()}


@router.get("/payments/new", response_class=HTMLResponse, name="payment_new")
def payment_new(request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    if not viewer.has("finance"):
        return _forbidden(request, session, "record payments (finance does)")
    query = request.query_params
    values = {name: (query.get(name) or "")[:60] for name in PAYMENT_FIELDS}
    values["customer_code"] = values["customer_code"] or (query.get("customer") or "")[:20]
    values["payment_date"] = values["payment_date"] or datetime.now(UTC).date().isoformat()
    return _render(request, session, "orders/payment.html", _payment_context(session, values, {}))


@router.post("/payments/new", dependencies=[CsrfProtected], name="payment_create")
async def payment_create(request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    viewer = _viewer(request, user)
    if not viewer.has("finance"):
        return _forbidden(request, session, "record payments (finance does)")
    posted = await request.form()
    values = {name: _text(posted, name, 60) for name in PAYMENT_FIELDS}
    try:
        body = service.PaymentIn.model_validate({**values, "invoice_number": values["invoice_number"] or None,
                                                 "amount": values["amount"] or None,
                                                 "payment_date": values["payment_date"] or None})
        result = await service.record_payment(session, _client_source(request, settings), viewer, body)
    except ValidationError as err:
        errors = _pydantic_errors(err)
    except service.FieldProblems as problems:
        errors = problems.as_dict()
    else:
        p = result.payment
        word = "Recorded" if result.created else "Already recorded"
        flash(request, f"{word}: payment {p.reference} of {p.amount:,.2f} from {result.customer_code}.", "success")
        if result.notified:
            flash(request, f"Orders told: {', '.join(result.notified)}.", "info")
        for n, reason in result.not_notified:
            flash(request, f"Order {n} was not told: {reason}. Post the payment again to retry.", "warning")
        return _redirect("/payments/new")
    context = _payment_context(session, values, errors, "The payment was not recorded: please correct the fields.")
    return _render(request, session, "orders/payment.html", context, code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@router.post("/payments/import", dependencies=[CsrfProtected], name="payment_import")
async def payment_import(request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    """A bank statement uploaded by finance: the payment page again, with every line's result (created or skipped,
    the orders told and not told), or every bad line's reason (422) and nothing recorded."""
    viewer = _viewer(request, user)
    if not viewer.has("finance"):
        return _forbidden(request, session, "import payments (finance does)")
    posted = await request.form()
    upload = posted.get("file")
    filename = (upload.filename or "")[:200] if isinstance(upload, UploadFile) else ""
    data = await upload.read(MAX_IMPORT_BYTES + 1) if isinstance(upload, UploadFile) else b""
    problem = ("Choose the bank statement's CSV file first." if not data else
               f"The file is too large: at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB." if len(data) > MAX_IMPORT_BYTES
               else "")
    if problem:
        context = _payment_context(session, _today_values(), {}, import_message=problem, filename=filename)
        return _render(request, session, "orders/payment.html", context, code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    outcome = await import_payment_file(session, _client_source(request, settings), viewer.username, data, filename)
    if isinstance(outcome, ImportFailed):
        context = _payment_context(session, _today_values(), {}, import_failed=outcome, filename=filename,
                                   import_message=f"Nothing was recorded: {len(outcome.errors)} problem(s) in "
                                                  f"{filename or 'the file'}. Correct the lines below and upload it "
                                                  "again.")
        return _render(request, session, "orders/payment.html", context, code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    context = _payment_context(session, _today_values(), {}, imported=outcome, filename=filename)
    return _render(request, session, "orders/payment.html", context)
