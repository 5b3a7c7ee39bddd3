"""Login and logout (session cookie), who am I, and API tokens for machine clients.

The login page is `ui/templates/login.html` (context: csrf_token, next, error, username).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlmodel import Session

from api.audit import audit
from api.deps import (
    CSRF_HEADER,
    SESSION_CSRF,
    SESSION_PWD,
    SESSION_USER,
    STAFF_HOME,
    AnyUser,
    CsrfProtected,
    LoginCsrfProtected,
    SessionDep,
    authenticate,
    csrf_token,
    home_of,
    is_contact,
    password_fingerprint,
    token_sha256,
    user_roles,
)
from models.masterdata import Customer
from models.users import ApiToken, User, hash_password, verify_password
from models.users_api import ApiTokenCreate, ApiTokenCreated, ApiTokenPublic, UserPublic
from ui import TEMPLATES

TOKEN_PREFIX = "tf_"
LOGIN_FAILED = "invalid username or password"

router = APIRouter(tags=["auth"])

# Verified against when the username is unknown, so a miss costs as long as a wrong password (no user probing).
_dummy_hash: str | None = None


def _spend_password_time(password: str) -> None:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(16))
    verify_password(password, _dummy_hash)


def safe_next(target: str | None) -> str:
    """Only a path on this site: an absolute or scheme-relative URL would make /login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def landing(user: User, target: str | None) -> str:
    """Where a login (or a logged-in visit to /login) goes: the page asked for, except that a customer contact
    lands in the portal unless a portal page was asked for (staff pages would only send them there again)."""
    wanted = safe_next(target)
    home = home_of(user)
    if home == STAFF_HOME or wanted == home or wanted.startswith(home + "/") or wanted.startswith(home + "?"):
        return wanted
    return home


def _login_page(request: Request, *, next_url: str, error: str = "", username: str = "", code: int = 200):
    context = {"csrf_token": csrf_token(request), "next": next_url, "error": error, "username": username}
    return TEMPLATES.TemplateResponse(request=request, name="login.html", context=context, status_code=code)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request, session: SessionDep, next: str = "/"):
    if (user := authenticate(request, session)) is not None:
        return RedirectResponse(landing(user, next), status_code=status.HTTP_303_SEE_OTHER)
    return _login_page(request, next_url=safe_next(next))


@router.post("/login", response_class=HTMLResponse, include_in_schema=False, dependencies=[LoginCsrfProtected])
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/",
):
    username = username.strip()
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _spend_password_time(password)
        ok = False
    else:
        ok = verify_password(password, user.password_hash)
    if not ok or user is None or not user.active:
        reason = "unknown user" if user is None else ("inactive user" if not user.active else "wrong password")
        audit(session, actor=username or "-", action="login_failed", entity_kind="user",
              entity_id=user.id if user else "-", reason=reason,
              data={"client": request.client.host if request.client else None})
        session.commit()
        # One message for every cause: the page never tells which part was wrong.
        return _login_page(request, next_url=safe_next(next), error=LOGIN_FAILED, username=username,
                           code=status.HTTP_401_UNAUTHORIZED)
    # A fresh session on login: nothing from before (a planted CSRF token, another user) carries over.
    request.session.clear()
    request.session[SESSION_USER] = user.id
    request.session[SESSION_PWD] = password_fingerprint(user.password_hash)
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    target = landing(user, next)
    audit(session, actor=user.username, action="login", entity_kind="user", entity_id=user.id,
          data={"client": request.client.host if request.client else None})
    session.commit()
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", include_in_schema=False, dependencies=[CsrfProtected])
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    user = authenticate(request, session)
    if user is not None:
        audit(session, actor=user.username, action="logout", entity_kind="user", entity_id=user.id)
        session.commit()
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


# ------------------------------------------------------------------------------------------- JSON


api = APIRouter(prefix="/api/v1", tags=["auth"], dependencies=[CsrfProtected])


def user_public(session: Session, user: User) -> UserPublic:
    code = session.scalar(select(Customer.code).where(Customer.id == user.customer_id)) if is_contact(user) else None
    return UserPublic.model_validate(user, update={"groups": sorted(user_roles(session, user.id)),
                                                   "customer_code": code})


# Who am I and API tokens are open to customer contacts too: a token made by a contact acts as that contact, so a
# customer's own system gets access tied to that one customer.


@api.get("/me", response_model=UserPublic)
def me(request: Request, response: Response, session: SessionDep, user: AnyUser) -> UserPublic:
    """Who is calling. For a cookie session the response also carries the session's CSRF token in the
    X-CSRF-Token header, for scripts that then send it back on their writes."""
    if request.state.auth_via == "session":
        response.headers[CSRF_HEADER] = csrf_token(request)
    return user_public(session, user)


@api.post("/tokens", response_model=ApiTokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: ApiTokenCreate, session: SessionDep, user: AnyUser) -> ApiTokenCreated:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=body.name, token_sha256=token_sha256(token), prefix=token[:12])
    session.add(row)
    session.flush()
    audit(session, actor=user.username, action="token_create", entity_kind="api_token", entity_id=row.id,
          data={"name": row.name, "prefix": row.prefix})
    session.commit()
    return ApiTokenCreated.model_validate(row, update={"token": token})


@api.get("/tokens", response_model=list[ApiTokenPublic])
def list_tokens(session: SessionDep, user: AnyUser) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


@api.delete("/tokens/{token_id}", response_model=ApiTokenPublic)
def revoke_token(token_id: int, request: Request, session: SessionDep, user: AnyUser) -> ApiToken:
    row = session.get(ApiToken, token_id)
    # Another user's token is "not found" to you, unless you are an admin (who may revoke any).
    if row is None or (row.user_id != user.id and "admin" not in request.state.roles):
        raise HTTPException(status_code=404, detail=f"API token {token_id} not found")
    if not row.revoked:
        row.revoked = True
        session.add(row)
        audit(session, actor=user.username, action="token_revoke", entity_kind="api_token", entity_id=row.id,
              data={"name": row.name, "owner_id": row.user_id})
        session.commit()
    return row
