"""The approver's inbox as pages: the list with its views, counts, filters, sorting, paging and SLA colours, quick
actions and bulk approve; the task page with the request in full, why the task came to you, the chain so far and
the action forms. Every form posts with the session's CSRF token and answers with a 303 back and a flash message
saying what happened or why it was refused. The actions go through api.inbox.perform_many, the same code as the
JSON API.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session

from api import inbox as inbox_api
from api.auth import safe_next
from api.deps import CsrfProtected, PageUser, SessionDep, SettingsDep, csrf_token, current_roles
from api.health import get_temporal_client
from api.pages import DEFAULT_PER_PAGE, PER_PAGE_CHOICES, Listing
from models import inbox
from models import order_views
from models.approvals import HumanTask
from models.masterdata import Customer
from models.users import Group, User
from ui import TEMPLATES, flash, humanize
from workflows.approval_rules import DocumentKind
from workflows.contracts import AMENDMENT_KIND

router = APIRouter(include_in_schema=False)

MAX_BULK_MESSAGES = 8  # refusals listed one by one after a bulk approve; more are summed up (cookie size)
STATUSES = ("ready", "reserved", "completed", "skipped", "expired", "cancelled")
DECISION_ACTIONS = {"approve": "approved", "reject": "rejected", "request_changes": "changes_requested"}
FORM_ACTIONS = ("claim", "release", "resolve", "delegate", "forward", *DECISION_ACTIONS)
DONE_WORDS = {
    "claim": "Claimed", "release": "Released", "resolve": "Handed back", "delegate": "Delegated",
    "forward": "Forwarded", "approved": "Approved", "rejected": "Rejected", "changes_requested": "Changes requested",
}
FAILED_WORDS = {
    "claim": "Not claimed", "release": "Not released", "resolve": "Not handed back", "delegate": "Not delegated",
    "forward": "Not forwarded", "approved": "Not approved", "rejected": "Not rejected",
    "changes_requested": "Changes not requested",
}


def _viewer(request: Request, user: User) -> inbox.Viewer:
    return inbox_api.viewer_of(user, current_roles(request))


def _render(request: Request, session: Session, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    """End the read transaction before rendering (on SQLite it holds the write lock: BEGIN IMMEDIATE). The rows
    are detached first: a commit expires loaded rows, and the template would re-select each one, one by one, in
    a new transaction. The user is loaded before, so the page header can read it detached too."""
    user = getattr(request.state, "user", None)
    if user is not None:
        _ = user.full_name  # loads an instance the authentication's commit expired
    session.expunge_all()
    session.commit()
    return TEMPLATES.TemplateResponse(request=request, name=name, context=context, status_code=code)


def _int(value: str | None, default: int, low: int = 1, high: int = 1_000_000) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(max(number, low), high)


def _due_text(task: HumanTask, now: datetime) -> str:
    """ "in 5 h", "2 d overdue": how far the deadline is, in the unit a person thinks in."""
    if task.due_at is None:
        return ""
    due = task.due_at if task.due_at.tzinfo else task.due_at.replace(tzinfo=UTC)
    seconds = (due - now).total_seconds()
    span = abs(seconds)
    if span < 3600:
        amount = f"{max(1, int(span // 60))} min"
    elif span < 48 * 3600:
        amount = f"{int(span // 3600)} h"
    else:
        amount = f"{int(span // 86400)} d"
    return f"in {amount}" if seconds > 0 else f"{amount} overdue"


def _priority_label(priority: int) -> tuple[str, str]:
    if priority > 75:
        return "Urgent", "danger"
    if priority > 50:
        return "High", "warn"
    if priority <= 25:
        return "Low", "neutral"
    return "Normal", "neutral"


def status_label(task) -> tuple[str, str]:
    """(text, badge kind) of a task's state, as the list and the task page show it."""
    if task.status == "completed":
        return {"approved": ("Approved", "ok"), "rejected": ("Rejected", "danger")}.get(
            task.outcome, ("Changes requested", "warn"))
    if task.status == "reserved":
        return ("Delegated", "info") if task.delegation_state == "pending" else ("Claimed", "info")
    if task.status == "ready":
        return "Unclaimed", "neutral"
    return humanize(task.status), "neutral"


def who_text(task) -> tuple[str, str]:
    """(who holds or held the task, on whose behalf) for the list's status column."""
    if task.status == "reserved":
        return task.assignee or "", (f"for {task.owner}" if task.delegation_state == "pending" else "")
    if task.status == "ready":
        return "", ", ".join([*(task.candidate_groups or []), *(task.candidate_users or [])])
    if task.completed_by:
        return task.completed_by, (f"for {task.acting_for}" if task.acting_for else "")
    return "", ""


@dataclass
class Row:
    """One line of the list, with everything the template shows worked out here (a macro per cell per row costs
    more than the query)."""

    task: Any
    sla: str | None
    due_text: str
    allowed: inbox.Allowed
    priority: tuple[str, str]
    status: tuple[str, str]
    who: tuple[str, str]


# ------------------------------------------------------------------------------------------- the list


def _filters_from(params) -> tuple[inbox.InboxFilters, dict[str, str]]:
    """Filters typed into the address bar: tolerated when malformed (dropped), echoed back into the form."""
    raw = {name: (params.get(name) or "").strip()[:inbox.MAX_TEXT] for name in
           ("kind", "branch", "status", "amount_min", "amount_max", "due_before", "due_after", "q")}
    data = {**raw, "text": raw.pop("q")}
    if data["status"] not in STATUSES:
        data["status"] = ""
    filters = inbox.InboxFilters.from_dict(data)
    form = {**{k: v for k, v in raw.items()}, "q": data["text"], "status": data["status"]}
    return filters, form


@router.get("/inbox", response_class=HTMLResponse, name="inbox")
def inbox_list(request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    query = request.query_params
    now = datetime.now(UTC)
    saved_id = _int(query.get("saved"), 0, low=0)
    saved = inbox.saved_view(session, viewer, saved_id) if saved_id else None
    if saved is not None:
        view, filters, sort = inbox.view_settings(saved)
        form = {**{k: "" for k in ("kind", "branch", "status", "amount_min", "amount_max", "due_before",
                                   "due_after")}, **filters.as_dict()}
        form["q"] = form.pop("text", "")
        for key in ("due_before", "due_after"):
            form[key] = form[key][:10]
        sort = query.get("sort") or sort
    else:
        view = query.get("view") if query.get("view") in inbox.VIEWS else inbox.DEFAULT_VIEW
        filters, form = _filters_from(query)
        sort = query.get("sort")
    sort = inbox.normal_sort(view, sort)
    per_page = _int(query.get("per_page"), DEFAULT_PER_PAGE)
    per_page = per_page if per_page in PER_PAGE_CHOICES else DEFAULT_PER_PAGE
    page_no = _int(query.get("page"), 1)
    result = inbox.search(session, viewer, view=view, filters=filters, sort=sort,
                          offset=(page_no - 1) * per_page, limit=per_page, now=now)
    params: dict[str, Any] = {"view": view if view != inbox.DEFAULT_VIEW else None}
    if saved is not None:
        params = {"saved": saved.id}
    else:
        params.update({k: v for k, v in form.items() if v})
    listing = Listing(request.url.path, params, result.total, result.offset // per_page + 1, per_page,
                      result.sort, inbox.normal_sort(view, None), rows=[])
    listing.rows = [
        Row(t, inbox.sla_state(t, now), _due_text(t, now), inbox.allowed_actions(t, viewer),
            _priority_label(t.priority), status_label(t), who_text(t))
        for t in result.rows
    ]
    filter_params = {k: v for k, v in form.items() if v}
    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    tabs = [
        {"key": v, "label": label, "count": result.counts.get(v, 0), "current": v == view and saved is None,
         "url": "/inbox?" + urlencode({"view": v, **filter_params}) if (v != inbox.DEFAULT_VIEW or filter_params)
         else "/inbox"}
        for v, label in inbox.VIEWS.items()
    ]
    views = inbox.saved_views(session, viewer)
    context = {
        "title": "Inbox",
        "active_nav": "inbox",
        "listing": listing,
        "view": view,
        "view_label": inbox.VIEWS[view],
        "tabs": tabs,
        "form": form,
        "filtered": bool(filter_params),
        # An amendment's chain is judged by the quote policy, so it is no policy kind, but approvers filter by it.
        "kinds": [*(k.value for k in DocumentKind), AMENDMENT_KIND],
        "statuses": inbox.OPEN,
        "saved": saved,
        "saved_views": views,
        "my_groups": sorted(viewer.groups),
        "per_page_choices": PER_PAGE_CHOICES,
        "here": here,
        # Escaped once here instead of once per row and form in the template (they repeat on every line).
        "here_safe": escape(here),
        "here_q_safe": escape(quote(here, safe="")),
        "csrf_safe": escape(csrf_token(request)),
        "sort_labels": inbox.SORT_LABELS,
        "bulk_possible": any(r.allowed.decide for r in listing.rows),
        "now": now,
    }
    return _render(request, session, "inbox/list.html", context)


# ------------------------------------------------------------------------------------------- the task page

MONEY_WORDS = ("amount", "total", "price", "cost", "limit", "exposure", "balance", "net", "value", "receivable",
               "overdue", "orders", "available", "headroom", "subtotal", "tax", "credit")
PERCENT_WORDS = ("percent", "margin", "discount", "rate")
QTY_WORDS = ("qty", "quantity")
LINE_COLUMNS = (
    (("sku", "product_code", "code"), "SKU", "code"),
    (("description", "name", "product"), "Description", "text"),
    (("qty", "quantity"), "Qty", "qty"),
    (("uom", "unit"), "Unit", "text"),
    (("list_price",), "List price", "money"),
    (("unit_price", "price"), "Unit price", "money"),
    (("discount_percent", "discount"), "Discount", "percent"),
    (("net", "line_total", "amount", "total"), "Net", "money"),
    (("unit_cost", "cost"), "Unit cost", "money"),
    (("margin_percent", "margin"), "Margin", "percent"),
)
MONEY_SECTIONS = ("credit", "credit_exposure", "exposure", "totals")
SECTION_TITLES = {
    "customer": "Customer",
    "credit": "Customer credit exposure",
    "credit_exposure": "Customer credit exposure",
    "exposure": "Customer credit exposure",
    "totals": "Totals",
    "supplier": "Supplier",
}


def _format_of(key: str, value: Any, numbers: str = "text") -> str:
    """How to show a value, guessed from its key ("discount_percent" -> percent, "credit_limit" -> money);
    `numbers` is the format of a number whose key says nothing (money in a credit or totals section)."""
    name = key.lower()
    if isinstance(value, bool) or value is None:
        return "text"
    if not isinstance(value, (int, float, Decimal, str)):
        return "text"
    if isinstance(value, str):
        try:
            Decimal(value)
        except Exception:
            return "text"
    if any(w in name for w in PERCENT_WORDS):
        return "percent"
    if any(w in name for w in QTY_WORDS):
        return "qty"
    if any(w in name for w in MONEY_WORDS):
        return "money"
    return numbers


def _kv(data: dict[str, Any], numbers: str = "text") -> list[dict[str, Any]]:
    return [{"label": humanize(k), "value": v, "format": _format_of(k, v, numbers)} for k, v in data.items()
            if not isinstance(v, (dict, list))]


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    columns: list[dict[str, str]] = []
    used: set[str] = set()
    for names, label, fmt in LINE_COLUMNS:
        found = next((n for n in names if n in keys and n not in used), None)
        if found:
            used.add(found)
            columns.append({"key": found, "label": label, "format": fmt})
    for k in keys:
        if k not in used and not any(isinstance(r.get(k), (dict, list)) for r in rows):
            columns.append({"key": k, "label": humanize(k), "format": _format_of(k, rows[0].get(k))})
    return {"columns": columns, "rows": rows}


def present_details(details: dict[str, Any]) -> dict[str, Any]:
    """Shape a request's `details` for the page. Known keys get their own blocks (a quote's `customer`, `lines`,
    `credit`, `totals`); any other value is still shown, as a fact list, a section or a table."""
    summary: list[dict[str, Any]] = []
    sections: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    for key, value in (details or {}).items():
        title = SECTION_TITLES.get(key, humanize(key))
        if isinstance(value, dict):
            numbers = "money" if key in MONEY_SECTIONS else "text"
            sections.append({"key": key, "title": title, "items": _kv(value, numbers)})
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append({"key": key, "title": "Lines" if key == "lines" else title, **_table(value)})
        elif isinstance(value, list):
            summary.append({"label": title, "value": ", ".join(str(v) for v in value), "format": "text"})
        else:
            summary.append({"label": title, "value": value, "format": _format_of(key, value)})
    return {"summary": summary, "sections": sections, "tables": tables}


@router.get("/inbox/{task_key:path}", response_class=HTMLResponse, name="inbox_task")
def inbox_task(task_key: str, request: Request, session: SessionDep, user: PageUser):
    viewer = _viewer(request, user)
    now = datetime.now(UTC)
    task = inbox.visible_task(session, viewer, task_key)
    if task is None:
        return _render(request, session, "pages/not_found.html",
                       {"title": "Not found", "what": "task", "ident": task_key[:60], "back": "/inbox",
                        "back_label": "Back to the inbox", "active_nav": "inbox"},
                       code=status.HTTP_404_NOT_FOUND)
    approval = inbox.approval_request(session, task.request_key)
    chain = inbox.chain_tasks(session, task.request_key)
    history = inbox.chain_history(session, task.request_key, [t.task_key for t in chain])
    allowed = inbox.allowed_actions(task, viewer, inbox.earlier_approvers(chain))
    people = list(session.scalars(
        select(User.username).where(User.active.is_(True), User.username != viewer.username,
                                    User.username != task.requester).order_by(User.username).limit(500)))
    groups = list(session.scalars(select(Group.name).order_by(Group.name)))
    my_match = sorted(set(task.candidate_groups or []) & viewer.groups)
    context = {
        "title": task.title,
        "active_nav": "inbox",
        "task": task,
        "sla": inbox.sla_state(task, now),
        "due_text": _due_text(task, now),
        "priority": _priority_label(task.priority),
        "approval": approval,
        "details": present_details(approval.details if approval else {}),
        "facts": [f for f in _kv(approval.facts or {}) if f["value"] not in (None, "")] if approval else [],
        "chain": chain,
        "history": history,
        "allowed": allowed,
        "my_match": my_match,
        "i_am_candidate_by_name": viewer.username in (task.candidate_users or []),
        "people": people,
        "groups": groups,
        "nonce": secrets.token_urlsafe(12),
        "back": safe_next(request.query_params.get("back")) if request.query_params.get("back") else "/inbox",
        "viewer": viewer,
        "sales_order": _sales_order_panel(session, task),
    }
    return _render(request, session, "inbox/task.html", context)


# Document kinds whose document is a sales order: the approver sees the customer's credit exposure as it stands
# now (the request's details are a snapshot taken when the request was made).
SALES_ORDER_KINDS = (DocumentKind.quote.value, DocumentKind.credit_hold.value, AMENDMENT_KIND)


def _sales_order_panel(session: Session, task: HumanTask) -> dict[str, Any] | None:
    if task.kind not in SALES_ORDER_KINDS or not task.document_ref:
        return None
    order = order_views.find_order(session, task.document_ref)
    if order is None:
        return None
    customer = session.get(Customer, order.customer_id)
    return {"order": order, "customer": customer, "credit": order_views.credit_summary(session, order, customer)}


# ------------------------------------------------------------------------------------------- form posts


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _name(task: HumanTask | None, task_key: str) -> str:
    return f"{task.document_ref} ({task.step_name})" if task is not None else task_key


def _text_field(form, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in value.replace(";", ",").split(",") if n.strip()))


@router.post("/inbox/bulk", dependencies=[CsrfProtected], name="inbox_bulk")
async def inbox_bulk(request: Request, session: SessionDep, user: PageUser, settings: SettingsDep):
    """Approve the ticked tasks; the flash says, per task, what happened."""
    form = await request.form()
    back = safe_next(_text_field(form, "next", 2000) or "/inbox")
    keys = list(dict.fromkeys(k.strip() for k in form.getlist("task_key") if isinstance(k, str) and k.strip()))
    if not keys:
        flash(request, "Tick the tasks to approve first.", "warning")
        return _redirect(back)
    keys = keys[: inbox_api.BULK_MAX]
    comment = _text_field(form, "comment", 2000)
    actions = [inbox_api.TaskAction("decide", k, outcome="approved", comment=comment) for k in keys]
    outcomes = await inbox_api.perform_many(session, lambda: get_temporal_client(request, settings),
                                            _viewer(request, user), actions)
    done = [o for o in outcomes if o.ok]
    refused = [o for o in outcomes if not o.ok]
    if done:
        names = ", ".join(_name(o.task, o.task_key) for o in done)
        flash(request, f"Approved {len(done)} of {len(outcomes)}: {names}.", "success")
    for o in refused[:MAX_BULK_MESSAGES]:
        flash(request, f"Not approved: {_name(o.task, o.task_key)}: {o.message}", "error")
    if len(refused) > MAX_BULK_MESSAGES:
        flash(request, f"{len(refused) - MAX_BULK_MESSAGES} more were not approved; open them to see why.", "error")
    return _redirect(back)


@router.post("/inbox/views", dependencies=[CsrfProtected], name="inbox_view_create")
async def inbox_view_create(request: Request, session: SessionDep, user: PageUser):
    form = await request.form()
    viewer = _viewer(request, user)
    data = {name: _text_field(form, name, 100) or None for name in
            ("kind", "branch", "status", "amount_min", "amount_max", "due_before", "due_after")}
    data["text"] = _text_field(form, "q", inbox.MAX_TEXT) or None
    try:
        body = inbox_api.SavedViewIn(
            name=_text_field(form, "name", 80),
            view=_text_field(form, "view", 40) or inbox.DEFAULT_VIEW,
            sort=_text_field(form, "sort", 20) or None,
            filters=inbox_api.InboxFiltersIn(**{k: v for k, v in data.items() if v}),
            shared_with_group=_text_field(form, "shared_with_group", 40) or None,
        )
    except ValidationError as err:
        problem = err.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "view"
        flash(request, f"The view was not saved: {field}: {problem['msg']}.", "error")
        return _redirect(safe_next(_text_field(form, "next", 2000) or "/inbox"))
    try:
        row = inbox_api.create_saved_view(session, viewer, body)
    except Exception as exc:  # RequestValidationError from the shared check: say it, do not 500
        session.rollback()
        flash(request, f"The view was not saved: {getattr(exc, 'errors', lambda: [{'msg': exc}])()[0]['msg']}.",
              "error")
        return _redirect(safe_next(_text_field(form, "next", 2000) or "/inbox"))
    session.commit()
    shared = f", shared with {row.shared_with_group}" if row.shared_with_group else ""
    flash(request, f"Saved the view “{row.name}”{shared}.", "success")
    return _redirect(f"/inbox?saved={row.id}")


@router.post("/inbox/views/{view_id}/delete", dependencies=[CsrfProtected], name="inbox_view_delete")
def inbox_view_delete(view_id: int, request: Request, session: SessionDep, user: PageUser):
    try:
        row = inbox_api.delete_saved_view(session, _viewer(request, user), view_id)
    except HTTPException as exc:
        flash(request, f"The view was not deleted: {exc.detail}.", "error")
        return _redirect("/inbox")
    session.commit()
    flash(request, f"Deleted the view “{row.name}”.", "success")
    return _redirect("/inbox")


@router.post("/inbox/{task_key:path}/{action}", dependencies=[CsrfProtected], name="inbox_task_action")
async def inbox_task_action(task_key: str, action: str, request: Request, session: SessionDep, user: PageUser,
                            settings: SettingsDep):
    """One action from a form on the list or the task page; 303 back with what happened or why not."""
    form = await request.form()
    task_page = f"/inbox/{task_key}"
    back = safe_next(_text_field(form, "next", 2000) or task_page)
    if action not in FORM_ACTIONS:
        flash(request, f"Unknown action “{action[:40]}”.", "error")
        return _redirect(back)
    version_text = _text_field(form, "expected_version", 12)
    expected = int(version_text) if version_text.isdigit() else None
    nonce = _text_field(form, "nonce", 40)
    comment = _text_field(form, "comment", 2000)
    kind = "decide" if action in DECISION_ACTIONS else action
    verb = DECISION_ACTIONS.get(action, action)
    task_action = inbox_api.TaskAction(
        kind, task_key, expected, comment,
        outcome=DECISION_ACTIONS.get(action),
        to_user=_text_field(form, "to_user", 60) or None,
        to_groups=_names(_text_field(form, "to_groups", 400)),
        to_users=_names(_text_field(form, "to_users", 400)),
        update_id=f"{user.username}:{verb}:{task_key}:{nonce}" if nonce else None,
    )
    if kind == "delegate" and not task_action.to_user:
        flash(request, "Not delegated: choose the person to delegate to.", "error")
        return _redirect(back)
    if kind == "forward" and not (task_action.to_groups or task_action.to_users):
        flash(request, "Not forwarded: name at least one group or person.", "error")
        return _redirect(back)
    [outcome] = await inbox_api.perform_many(session, lambda: get_temporal_client(request, settings),
                                             _viewer(request, user), [task_action])
    name = _name(outcome.task, task_key)
    if not outcome.ok:
        flash(request, f"{FAILED_WORDS[verb]}: {name}: {outcome.message}", "error")
        return _redirect(back)
    message = f"{DONE_WORDS[verb]}: {name}"
    if kind == "delegate":
        message += f", to {task_action.to_user}"
    elif kind == "forward":
        message += f", to {', '.join(task_action.to_groups + task_action.to_users)}"
    flash(request, message + ".", "success")
    # The task has left the viewer's hands: back to the list rather than to a page they can no longer act on.
    if kind in ("decide", "forward", "delegate") and back == task_page:
        back = safe_next(_text_field(form, "done", 2000) or "/inbox")
    return _redirect(back)
