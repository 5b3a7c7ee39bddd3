"""Purchase orders as pages: the list (state, supplier and origin filters, sorting, paging) and one order with its
lines. Buyers and the warehouse may read them (api/purchasing.py READERS); anyone else gets the 403 page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from api.deps import PageUser, SessionDep, current_roles, has_role
from api.pages import DEFAULT_PER_PAGE, PER_PAGE_CHOICES, Listing
from api.purchasing import READERS
from models import purchasing
from ui import TEMPLATES

router = APIRouter(include_in_schema=False)

STATES = tuple(s.value for s in purchasing.PurchaseOrderState)
STATE_KIND = {"draft": "warn", "confirmed": "info", "received": "ok", "cancelled": "neutral"}
MAX_TEXT = 60


def _render(request: Request, session: Session, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    # End the read transaction before rendering (on SQLite it holds the write lock: BEGIN IMMEDIATE); the page
    # only reads the plain rows the model handed over.
    session.commit()
    context.setdefault("active_nav", "purchasing")
    context.setdefault("state_kind", STATE_KIND)
    return TEMPLATES.TemplateResponse(request=request, name=name, context=context, status_code=code)


def _forbidden(request: Request, session: Session) -> HTMLResponse | None:
    if has_role(current_roles(request), *READERS):
        return None
    return _render(request, session, "purchasing/forbidden.html", {"title": "Not allowed"},
                   code=status.HTTP_403_FORBIDDEN)


def _int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(max(number, 1), 1_000_000)


@router.get("/purchase-orders", response_class=HTMLResponse, name="purchase_orders")
def purchase_order_list(request: Request, session: SessionDep, user: PageUser):
    if (refused := _forbidden(request, session)) is not None:
        return refused
    query = request.query_params
    form = {k: (query.get(k) or "").strip()[:MAX_TEXT] for k in ("state", "supplier", "origin")}
    if form["state"] not in STATES:
        form["state"] = ""  # a state typed into the address bar that does not exist filters nothing
    sort = query.get("sort") if (query.get("sort") or "").lstrip("-") in purchasing.SORTS else purchasing.DEFAULT_SORT
    per_page = _int(query.get("per_page"), DEFAULT_PER_PAGE)
    per_page = per_page if per_page in PER_PAGE_CHOICES else DEFAULT_PER_PAGE
    page_no = _int(query.get("page"), 1)

    def search(page: int):
        return purchasing.search_purchase_orders(session, state=form["state"] or None,
                                                 supplier=form["supplier"] or None, origin=form["origin"] or None,
                                                 sort=sort, offset=(page - 1) * per_page, limit=per_page)

    rows, total = search(page_no)
    last_page = max(1, -(-total // per_page))
    if page_no > last_page:  # a page beyond the end shows the last one
        page_no = last_page
        rows, total = search(page_no)
    params = {k: v for k, v in form.items() if v}
    listing = Listing(request.url.path, params, total, page_no, per_page, sort, purchasing.DEFAULT_SORT, rows=rows)
    return _render(request, session, "purchasing/list.html", {
        "title": "Purchase orders", "listing": listing, "form": form, "states": STATES,
        "filtered": bool(params), "per_page_choices": PER_PAGE_CHOICES,
    })


@router.get("/purchase-orders/{number}", response_class=HTMLResponse, name="purchase_order_detail")
def purchase_order_page(number: str, request: Request, session: SessionDep, user: PageUser):
    if (refused := _forbidden(request, session)) is not None:
        return refused
    detail = purchasing.purchase_order_detail(session, number)
    if detail is None:
        return _render(request, session, "pages/not_found.html",
                       {"title": "Not found", "what": "purchase order", "ident": number[:40],
                        "back": "/purchase-orders", "back_label": "Back to the purchase orders"},
                       code=status.HTTP_404_NOT_FOUND)
    return _render(request, session, "purchasing/detail.html",
                   {"title": f"{detail.order.number} · {detail.order.supplier_name}", "d": detail, "po": detail.order})
