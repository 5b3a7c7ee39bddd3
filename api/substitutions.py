"""Out of office: JSON under /api/v1/substitutions, and the /out-of-office page.

Anyone logged in names a substitute for their own absences; admins may do it for anyone. Both ways in call the
same rules (models/substitutions.py): a refused period is a 422 naming the field and the reason, on the page the
same message beside the form. New tasks that open during a period also go to the substitute (the workflow side,
ApprovalActivities.resolve_candidates); tasks already open stay where they are.

Include `router` with prefix /api/v1 (like api.routes.ROUTERS) and `pages` without a prefix.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlmodel import Session

from api.audit import audit
from api.deps import ADMIN, CsrfProtected, CurrentUser, PageUser, SessionDep, current_roles
from api.routes.common import Limit, Offset, invalid, page
from models.approvals import Substitution
from models.common import utcnow
from models.masterdata_api import Page
from models.substitutions import (
    SubstitutionCreate,
    SubstitutionPublic,
    SubstitutionRefused,
    as_utc,
    create_substitution,
    may_delete,
    may_see,
    public,
    visible_substitutions,
)
from models.users import User
from ui import TEMPLATES, flash

router = APIRouter(prefix="/substitutions", tags=["substitutions"], dependencies=[CsrfProtected])
pages = APIRouter(include_in_schema=False, dependencies=[CsrfProtected])

PAGE_PATH = "/out-of-office"
PAGE_ROWS = 200
PEOPLE_LIMIT = 1000  # names offered in the substitute field's suggestions
FORM_FIELDS = ("username", "substitute", "starts_at", "ends_at")


def _is_admin(request: Request) -> bool:
    return ADMIN in current_roles(request)


def _add(session: Session, request: Request, actor: User, body: SubstitutionCreate) -> Substitution:
    """Create a period for body.username (default: the caller); SubstitutionRefused or 403 otherwise."""
    username = body.username or actor.username
    if username != actor.username and not _is_admin(request):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail="only an admin may set out of office for someone else")
    row = create_substitution(session, username=username, substitute=body.substitute, starts_at=body.starts_at,
                              ends_at=body.ends_at, created_by=actor.username)
    audit(session, actor=actor.username, action="substitution.create", entity_kind="substitution",
          entity_id=row.id, data={"username": row.username, "substitute": row.substitute,
                                  "starts_at": row.starts_at.isoformat(), "ends_at": row.ends_at.isoformat()})
    return row


def _visible_or_404(session: Session, request: Request, user: User, substitution_id: int) -> Substitution:
    row = session.get(Substitution, substitution_id)
    # Someone else's period is "not found" to you, as API tokens are (api/auth.py).
    if row is None or not may_see(row, user.username, _is_admin(request)):
        raise HTTPException(status_code=404, detail=f"substitution {substitution_id} not found")
    return row


def _remove(session: Session, request: Request, user: User, row: Substitution) -> None:
    if not may_delete(row, user.username, _is_admin(request)):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail=f"only {row.username}, who entered it, or an admin may remove this period")
    audit(session, actor=user.username, action="substitution.delete", entity_kind="substitution",
          entity_id=row.id, data={"username": row.username, "substitute": row.substitute,
                                  "starts_at": as_utc(row.starts_at).isoformat(),
                                  "ends_at": as_utc(row.ends_at).isoformat()})
    session.delete(row)


# ------------------------------------------------------------------------------------------- JSON


@router.get("", response_model=Page[SubstitutionPublic])
def list_substitutions(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    username: Annotated[str | None, Query(max_length=60, description="only this person's periods")] = None,
    include_past: Annotated[bool, Query(description="also periods that are over")] = False,
    offset: Offset = 0,
    limit: Limit = 50,
):
    """Your periods, the ones you stand in for and the ones you entered; admins see everyone's. Soonest first."""
    now = utcnow()
    rows, total = visible_substitutions(session, viewer=user.username, is_admin=_is_admin(request),
                                        username=username, include_past=include_past, now=now, offset=offset,
                                        limit=limit)
    return page([public(r, now) for r in rows], total, offset, limit)


@router.post("", response_model=SubstitutionPublic, status_code=status.HTTP_201_CREATED,
             responses={403: {"description": "naming someone else without being an admin"},
                        422: {"description": "a rule refuses the period; `loc` names the field"}})
def add_substitution(body: SubstitutionCreate, request: Request, session: SessionDep, user: CurrentUser):
    """Name a substitute for a period. Refused (422, naming the field): a substitute who is not an active user
    or is the person themselves, an end before the start or in the past, a period overlapping another one of
    the same person, and substitutes that would hand the tasks back to the person (a loop)."""
    try:
        row = _add(session, request, user, body)
    except SubstitutionRefused as refused:
        raise invalid(refused.field, refused.reason, value=getattr(body, refused.field, None)) from None
    session.commit()
    return public(row)


@router.get("/{substitution_id}", response_model=SubstitutionPublic)
def read_substitution(substitution_id: int, request: Request, session: SessionDep, user: CurrentUser):
    return public(_visible_or_404(session, request, user, substitution_id))


@router.delete("/{substitution_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={403: {"description": "the substitute may not remove the period"}})
def delete_substitution(substitution_id: int, request: Request, session: SessionDep, user: CurrentUser):
    """Remove a period: new tasks stop going to the substitute; tasks already handed to them stay."""
    _remove(session, request, user, _visible_or_404(session, request, user, substitution_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ------------------------------------------------------------------------------------------- the page


def _minute(moment: datetime) -> str:
    """The value an <input type="datetime-local"> shows (UTC, to the minute)."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M")


def _page(request: Request, session: Session, user: User, *, form: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, include_past: bool = False, code: int = 200) -> HTMLResponse:
    now = utcnow()
    is_admin = _is_admin(request)
    rows, total = visible_substitutions(session, viewer=user.username, is_admin=is_admin,
                                        include_past=include_past, now=now, limit=PAGE_ROWS)
    people = session.execute(
        select(User.username, User.full_name).where(User.active.is_(True)).order_by(User.username)
        .limit(PEOPLE_LIMIT)
    ).all()
    context: dict[str, Any] = {
        "title": "Out of office",
        "active_nav": "out-of-office",
        "rows": [
            {"row": public(r, now), "may_delete": may_delete(r, user.username, is_admin)} for r in rows
        ],
        "total": total,
        "shown": len(rows),
        "include_past": include_past,
        "people": [{"username": u, "full_name": n} for u, n in people],
        "form": form or {"username": user.username, "substitute": "", "starts_at": _minute(now),
                         "ends_at": _minute(now + timedelta(days=7))},
        "errors": errors or {},
        "may_name_anyone": is_admin,
        "me": user.username,
    }
    # End the read transaction before rendering (on SQLite it holds the write lock).
    session.commit()
    return TEMPLATES.TemplateResponse(request=request, name="out_of_office.html", context=context, status_code=code)


@pages.get(PAGE_PATH, response_class=HTMLResponse)
def out_of_office_page(request: Request, session: SessionDep, user: PageUser, past: str | None = None):
    return _page(request, session, user, include_past=past in ("1", "true", "yes"))


def _parse_time(value: str) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        return None


@pages.post(PAGE_PATH, response_class=HTMLResponse)
def out_of_office_submit(
    request: Request,
    session: SessionDep,
    user: PageUser,
    substitute: Annotated[str, Form(max_length=60)] = "",
    starts_at: Annotated[str, Form(max_length=40)] = "",
    ends_at: Annotated[str, Form(max_length=40)] = "",
    username: Annotated[str, Form(max_length=60)] = "",
):
    form = {"username": username.strip() or user.username, "substitute": substitute.strip(),
            "starts_at": starts_at, "ends_at": ends_at}
    errors: dict[str, str] = {}
    if not form["substitute"]:
        errors["substitute"] = "name who stands in for you"
    start, end = _parse_time(starts_at), _parse_time(ends_at)
    if start is None:
        errors["starts_at"] = "enter the start as date and time"
    if end is None:
        errors["ends_at"] = "enter the end as date and time"
    if form["username"] != user.username and not _is_admin(request):
        errors["username"] = "only an admin may set out of office for someone else"
    if not errors:
        body = SubstitutionCreate(username=form["username"], substitute=form["substitute"], starts_at=start,
                                  ends_at=end)
        try:
            row = _add(session, request, user, body)
        except SubstitutionRefused as refused:
            errors[refused.field] = refused.reason
        else:
            session.commit()
            flash(request, f"{row.substitute} stands in for {row.username} from "
                           f"{as_utc(row.starts_at):%Y-%m-%d %H:%M} to {as_utc(row.ends_at):%Y-%m-%d %H:%M} UTC.",
                  "success")
            return RedirectResponse(PAGE_PATH, status_code=status.HTTP_303_SEE_OTHER)
    session.rollback()
    return _page(request, session, user, form=form, errors=errors, code=status.HTTP_422_UNPROCESSABLE_CONTENT)


@pages.post(PAGE_PATH + "/{substitution_id}/delete", response_class=HTMLResponse)
def out_of_office_delete(substitution_id: int, request: Request, session: SessionDep, user: PageUser):
    row = session.get(Substitution, substitution_id)
    if row is None or not may_see(row, user.username, _is_admin(request)):
        flash(request, "That period no longer exists.", "warning")
    elif not may_delete(row, user.username, _is_admin(request)):
        flash(request, f"Only {row.username}, who entered it, or an admin may remove this period.", "error")
    else:
        text = (f"Removed: {row.substitute} no longer stands in for {row.username} "
                f"({as_utc(row.starts_at):%Y-%m-%d %H:%M} to {as_utc(row.ends_at):%Y-%m-%d %H:%M} UTC).")
        _remove(session, request, user, row)
        session.commit()
        flash(request, text, "success")
    return RedirectResponse(PAGE_PATH, status_code=status.HTTP_303_SEE_OTHER)
