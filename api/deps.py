"""Request dependencies: settings, the database session, who is calling, what they may do, and CSRF.

Authentication and authorisation live here as reusable dependencies, never inside handlers (OWASP FastAPI
cheat sheet). Two ways in:

- a browser session: Starlette's SessionMiddleware keeps a signed (itsdangerous) cookie holding the user id,
  a fingerprint of the password hash (changing the password ends other sessions) and the CSRF token;
- a machine client: `Authorization: Bearer <token>`; only the token's sha256 is stored (models.users.ApiToken).

A request that carries an Authorization header is authenticated by that header alone, never by the cookie, which
is also why such requests are exempt from CSRF: a cross-site form cannot set that header.

Two kinds of users: staff, and customer contacts (User.customer_id set). CurrentUser, PageUser and require_roles
let only staff through, so every existing route refuses a contact unless it opts in (AnyUser, PortalUser,
require_roles(..., contacts=True)) and limits what the contact sees to their own customer.

One Session per request, and everything in the request uses it. On SQLite every transaction starts with
BEGIN IMMEDIATE (models/db.py), so a second Session opened inside a request would wait on the first one's lock.
"""

import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from config import Settings, get_settings
from models.common import utcnow
from models.db import make_engine
from models.users import ApiToken, Group, User, UserGroup

SESSION_USER = "uid"
SESSION_PWD = "pwd"
SESSION_CSRF = "csrf"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
ADMIN = "admin"
# Writing last_used_at on every call would turn every read into a write; a minute is precise enough.
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)


# ------------------------------------------------------------------------------------------- settings, DB


# `config.get_settings` is the one settings dependency; create_app() overrides it with the app's own Settings, so
# every route and module (health included) sees the same values.
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_engine(request: Request, settings: SettingsDep) -> Engine:
    """The app's engine (create_app puts it on app.state.engine); built once from the settings otherwise."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        engine = make_engine(settings.database_url)
        request.app.state.engine = engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    """The request's unit of work. Routes that write call `session.commit()` themselves (so a constraint
    violation surfaces inside the route and maps to 409); anything uncommitted is rolled back at the end.
    A commit expires the loaded rows, so what a route returns after it is read back as stored (a Decimal with
    its column's scale, defaults the database filled in)."""
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


# ------------------------------------------------------------------------------------------- helpers


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    """Stored in the session cookie: when the password changes, sessions opened with the old one stop working."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def user_roles(session: Session, user_id: int) -> frozenset[str]:
    names = session.scalars(
        select(Group.name).join(UserGroup, UserGroup.group_id == Group.id).where(UserGroup.user_id == user_id)
    ).all()
    return frozenset(names)


def has_role(roles: frozenset[str] | set[str], *wanted: str) -> bool:
    return ADMIN in roles or any(r in roles for r in wanted)


def _aware(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were written as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bearer(request: Request) -> str | None:
    """The bearer token, "" for a malformed Authorization header, None when there is none."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return ""
    return value.strip()


def _remember(request: Request, session: Session, user: User, via: str) -> User:
    request.state.user = user
    request.state.roles = user_roles(session, user.id)
    request.state.auth_via = via
    # Detached first, so the commit does not expire it: what the request reads of the user (its customer_id in
    # every staff/contact check) never reloads it in a new transaction that would hold SQLite's write lock.
    session.expunge(user)
    # End the read transaction now: on SQLite it holds the database's write lock (BEGIN IMMEDIATE).
    session.commit()
    return user


def _user_from_token(request: Request, session: Session, token: str) -> User | None:
    api_token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == token_sha256(token)))
    if api_token is None or api_token.revoked:
        return None
    user = session.get(User, api_token.user_id)
    if user is None or not user.active:
        return None
    now = utcnow()
    if api_token.last_used_at is None or now - _aware(api_token.last_used_at) >= TOKEN_TOUCH_INTERVAL:
        api_token.last_used_at = now
        session.add(api_token)
    request.state.api_token_id = api_token.id
    return user


def _user_from_cookie(request: Request, session: Session) -> User | None:
    if "session" not in request.scope:  # no SessionMiddleware (a bare test app): nobody is logged in
        return None
    user_id = request.session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = session.get(User, user_id)
    if user is None or not user.active:
        request.session.pop(SESSION_USER, None)
        return None
    if not secrets.compare_digest(
        str(request.session.get(SESSION_PWD, "")), password_fingerprint(user.password_hash)
    ):
        request.session.pop(SESSION_USER, None)
        return None
    return user


def authenticate(request: Request, session: Session) -> User | None:
    """The calling user, or None. Sets request.state.user, .roles and .auth_via ("token" or "session")."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    if token is not None:
        user = _user_from_token(request, session, token) if token else None
        return _remember(request, session, user, "token") if user else None
    user = _user_from_cookie(request, session)
    return _remember(request, session, user, "session") if user else None


# ------------------------------------------------------------------------------------------- who is calling


def is_contact(user: User) -> bool:
    """A customer's contact person (models.users.CUSTOMER_ROLE), as opposed to staff."""
    return user.customer_id is not None


PORTAL_HOME = "/portal"
STAFF_HOME = "/"


def home_of(user: User) -> str:
    return PORTAL_HOME if is_contact(user) else STAFF_HOME


def get_user(request: Request, session: SessionDep) -> User:
    """JSON routes open to customer contacts too (who am I, API tokens, their own quotes): the logged-in user
    (cookie or bearer token), staff or contact, else 401. Such a route limits a contact to their customer."""
    user = authenticate(request, session)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="not authenticated: log in, or send Authorization: Bearer <api token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


AnyUser = Annotated[User, Depends(get_user)]

CONTACT_REFUSED = "customer contacts may use only the portal and their own quotes and orders"


def get_current_user(request: Request, session: SessionDep) -> User:
    """JSON routes: the logged-in staff user (cookie or bearer token), else 401; a customer contact gets 403.
    Staff is the default: a route is open to contacts only when it asks for AnyUser and filters by customer."""
    user = get_user(request, session)
    if is_contact(user):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=CONTACT_REFUSED)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_contact(request: Request, session: SessionDep) -> User:
    """JSON routes of the portal: a customer contact, else 401 (anonymous) or 403 (staff)."""
    user = get_user(request, session)
    if not is_contact(user):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="only customer contacts have a portal")
    return user


ContactUser = Annotated[User, Depends(get_contact)]


def login_redirect_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def _logged_in_page_user(request: Request, session: Session) -> User:
    user = authenticate(request, session)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_303_SEE_OTHER,
            detail="login required",
            headers={"Location": login_redirect_url(request)},
        )
    return user


def _wrong_side(request: Request, user: User, detail: str) -> HTTPException:
    """A page of the other side (staff pages for a contact, the portal for staff): a GET goes to the user's own
    start page, anything else is refused."""
    if request.method in ("GET", "HEAD"):
        return HTTPException(status_code=status.HTTP_303_SEE_OTHER, detail=detail,
                             headers={"Location": home_of(user)})
    return HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=detail)


def get_page_user(request: Request, session: SessionDep) -> User:
    """HTML routes of the staff: the logged-in staff user, else a 303 redirect to /login?next=<this page>.
    A customer contact never sees a staff page: sent to the portal (GET) or refused (403)."""
    user = _logged_in_page_user(request, session)
    if is_contact(user):
        raise _wrong_side(request, user, CONTACT_REFUSED)
    return user


PageUser = Annotated[User, Depends(get_page_user)]


def get_portal_user(request: Request, session: SessionDep) -> User:
    """The portal's pages: a logged-in customer contact (anonymous: to the login page; staff: to their start
    page on a GET, else 403)."""
    user = _logged_in_page_user(request, session)
    if not is_contact(user):
        raise _wrong_side(request, user, "the portal is for customer contacts")
    return user


PortalUser = Annotated[User, Depends(get_portal_user)]


def current_roles(request: Request) -> frozenset[str]:
    """The roles of the user authenticated for this request (empty before authentication)."""
    return getattr(request.state, "roles", frozenset())


def require_roles(*roles: str, page: bool = False, contacts: bool = False) -> Callable[..., User]:
    """A dependency that lets through users holding any of `roles` (admin holds every role), else 403.

        @router.post(..., dependencies=[Depends(require_roles("sales", "sales-manager"))])
        def f(user: Annotated[User, Depends(require_roles("purchasing"))]): ...

    page=True authenticates like PageUser (redirect to login) instead of answering 401. contacts=True lets
    customer contacts through as well (JSON only): the route then limits them to their own customer."""
    wanted = frozenset(roles)
    base = get_page_user if page else (get_user if contacts else get_current_user)

    def _check(request: Request, user: Annotated[User, Depends(base)]) -> User:
        if contacts and is_contact(user):
            return user
        if not has_role(current_roles(request), *wanted):
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"forbidden: needs one of the roles {', '.join(sorted(wanted | {ADMIN}))}",
            )
        return user

    _check.__name__ = f"require_roles_{'_'.join(sorted(wanted)) or 'any'}{'_or_contacts' if contacts else ''}"
    return _check


AdminUser = Annotated[User, Depends(require_roles(ADMIN))]


# ------------------------------------------------------------------------------------------- CSRF


def csrf_token(request: Request) -> str:
    """The session's synchronizer token (created on first use). Put it in every form as `csrf_token`, or send it
    as the X-CSRF-Token header from scripts."""
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def rotate_csrf_token(request: Request) -> str:
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return request.session[SESSION_CSRF]


async def _verify_csrf(request: Request, *, anonymous_too: bool) -> None:
    if request.method in SAFE_METHODS or request.headers.get("authorization") is not None:
        return
    has_session = "session" in request.scope
    if not anonymous_too and (not has_session or SESSION_USER not in request.session):
        return  # nobody is logged in by cookie: there is no session to ride on, and auth will answer 401/303
    expected = request.session.get(SESSION_CSRF) if has_session else None
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches the parsed form; the route still gets its fields
            value = form.get(CSRF_FORM_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(str(expected), sent):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="CSRF token missing or invalid: reload the page and try again",
        )


async def check_csrf(request: Request) -> None:
    """Refuse (403) an unsafe request from a logged-in cookie session whose CSRF token is missing or wrong.

    Safe methods pass; so do requests with an Authorization header (authenticated by the header alone, which a
    cross-site page cannot send) and requests without a logged-in session (authentication refuses them)."""
    await _verify_csrf(request, anonymous_too=False)


async def check_login_csrf(request: Request) -> None:
    """For the login form itself: the token is checked before anyone is logged in (login CSRF)."""
    await _verify_csrf(request, anonymous_too=True)


CsrfProtected = Depends(check_csrf)
"""Use as `dependencies=[CsrfProtected]` on a route or router (it only acts on unsafe methods)."""
LoginCsrfProtected = Depends(check_login_csrf)
