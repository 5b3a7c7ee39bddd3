"""User management, for admins: list and create users with their groups, change details, set groups, deactivate.

Groups are the roles in models.users.ROLES, plus "customer" for a customer's contact (created with customer_code,
which links the user to that customer for good and allows no other group); a group row is created the first time
someone is put in it.
Passwords are hashed with Argon2 (pwdlib) and never returned.
"""

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import delete, select
from sqlmodel import Session

from api.auth import user_public
from api.deps import CsrfProtected, AdminUser, SessionDep, user_roles
from api.routes.common import (
    Limit,
    Offset,
    TextQuery,
    check_refs,
    contains,
    get_or_404,
    invalid,
    page,
    page_of,
    record_update,
    sort_literal,
)
from api.audit import audit
from models.masterdata import Branch, Customer
from models.masterdata_api import Page
from models.users import CUSTOMER_ROLE, Group, User, UserGroup, contact_groups_problem, hash_password
from models.users_api import UserCreate, UserGroupsUpdate, UserPublic, UserUpdate

router = APIRouter(tags=["users"], dependencies=[CsrfProtected])

UserSort = sort_literal("username", "full_name", "created_at", "id")
_USER_SORT = {"username": User.username, "full_name": User.full_name, "created_at": User.created_at, "id": User.id}


def set_groups(session: Session, user_id: int, names: list[str]) -> None:
    """Make the user's groups exactly `names` (creating missing group rows)."""
    groups = {g.name: g for g in session.scalars(select(Group).where(Group.name.in_(names)))}
    for name in names:
        if name not in groups:
            groups[name] = Group(name=name, description=f"Role {name}")
            session.add(groups[name])
    session.flush()
    session.execute(delete(UserGroup).where(UserGroup.user_id == user_id))
    session.add_all(UserGroup(user_id=user_id, group_id=groups[n].id) for n in names)
    session.flush()


@router.get("/users", response_model=Page[UserPublic])
def list_users(
    session: SessionDep,
    _: AdminUser,
    q: TextQuery = None,
    group: str | None = None,
    active: bool | None = None,
    sort: UserSort = "username",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(User)
    if (match := contains(q, User.username, User.full_name, User.email)) is not None:
        stmt = stmt.where(match)
    if group is not None:
        stmt = stmt.where(
            User.id.in_(select(UserGroup.user_id).join(Group, Group.id == UserGroup.group_id).where(Group.name == group))
        )
    if active is not None:
        stmt = stmt.where(User.active == active)
    rows, total = page_of(session, stmt, sort=sort, columns=_USER_SORT, tie=User.id, offset=offset, limit=limit)
    return page([user_public(session, u) for u in rows], total, offset, limit)


@router.get("/users/{user_id}", response_model=UserPublic)
def read_user(user_id: int, session: SessionDep, _: AdminUser):
    return user_public(session, get_or_404(session, User, user_id, "user"))


def _contact_customer(session: Session, code: str | None) -> Customer | None:
    """The customer a new user is the contact of (None for staff); 422 naming customer_code when unknown."""
    if code is None:
        return None
    customer = session.scalar(select(Customer).where(Customer.code == code.strip()))
    if customer is None:
        raise invalid("customer_code", f"no customer with code {code.strip()!r}", value=code)
    return customer


def _check_groups_fit(groups: list[str], is_contact: bool) -> None:
    if (problem := contact_groups_problem(groups, is_contact)) is not None:
        raise invalid("groups", problem, value=groups)


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep, admin: AdminUser):
    """Create a staff user with their groups, or (with customer_code) a customer's contact, whose one group is
    "customer": they see that customer's quotes and orders and nothing else."""
    check_refs(session, {"branch_id": (Branch, body.branch_id)})
    customer = _contact_customer(session, body.customer_code)
    _check_groups_fit(body.groups, customer is not None)
    groups = [CUSTOMER_ROLE] if customer is not None else body.groups
    row = User(**body.model_dump(exclude={"password", "groups", "customer_code"}),
               customer_id=customer.id if customer is not None else None,
               password_hash=hash_password(body.password))
    session.add(row)
    session.flush()
    set_groups(session, row.id, groups)
    audit(session, actor=admin.username, action="create", entity_kind="user", entity_id=row.id,
          data={"username": row.username, "groups": groups,
                **({"customer_code": customer.code} if customer is not None else {})})
    session.commit()
    return user_public(session, row)


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(user_id: int, body: UserUpdate, session: SessionDep, admin: AdminUser):
    row = get_or_404(session, User, user_id, "user")
    changes = body.model_dump(exclude_unset=True)
    for field in ("full_name", "email", "password", "active"):
        if field in changes and changes[field] is None:
            raise HTTPException(status_code=422, detail=f"{field} may not be null")
    check_refs(session, {"branch_id": (Branch, changes.get("branch_id"))})
    if row.id == admin.id and changes.get("active") is False:
        raise HTTPException(status_code=409, detail="you cannot deactivate yourself")
    changed = {}
    password = changes.pop("password", None)
    if password is not None:
        row.password_hash = hash_password(password)  # also ends the user's open sessions (deps.SESSION_PWD)
        changed["password"] = "changed"
    for key, value in changes.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed[key] = value
    session.add(row)
    record_update(session, admin, row, changed)
    session.commit()
    return user_public(session, row)


@router.put("/users/{user_id}/groups", response_model=UserPublic)
def update_user_groups(user_id: int, body: UserGroupsUpdate, session: SessionDep, admin: AdminUser):
    row = get_or_404(session, User, user_id, "user")
    before = sorted(user_roles(session, row.id))
    _check_groups_fit(body.groups, row.customer_id is not None)
    if row.id == admin.id and "admin" not in body.groups:
        raise HTTPException(status_code=409, detail="you cannot remove your own admin role")
    set_groups(session, row.id, body.groups)
    audit(session, actor=admin.username, action="set_groups", entity_kind="user", entity_id=row.id,
          data={"before": before, "after": body.groups})
    session.commit()
    return user_public(session, row)


@router.post("/users/{user_id}/deactivate", response_model=UserPublic)
def deactivate_user(user_id: int, session: SessionDep, admin: AdminUser):
    """The user can no longer log in, and their open sessions and API tokens stop working at once."""
    row = get_or_404(session, User, user_id, "user")
    if row.id == admin.id:
        raise HTTPException(status_code=409, detail="you cannot deactivate yourself")
    if row.active:
        row.active = False
        session.add(row)
        audit(session, actor=admin.username, action="deactivate", entity_kind="user", entity_id=row.id)
        session.commit()
    return user_public(session, row)
