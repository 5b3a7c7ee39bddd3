"""People and machine clients: users, groups (roles), and API tokens."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.common import utcnow

ROLES = (
    "sales",
    "sales-manager",
    "credit-controller",
    "purchasing",
    "purchasing-manager",
    "warehouse",
    "quality",
    "finance",
    "cfo",
    "process-designer",
    "admin",
)
# A customer's contact person (a user with customer_id): the portal and their own customer's quotes, nothing
# else. Not one of the staff ROLES above; a contact holds this group and no other.
CUSTOMER_ROLE = "customer"
GROUPS = (*ROLES, CUSTOMER_ROLE)


class UserGroup(SQLModel, table=True):
    __tablename__ = "user_group"
    user_id: int = Field(foreign_key="app_user.id", primary_key=True)
    group_id: int = Field(foreign_key="group.id", primary_key=True)


class Group(SQLModel, table=True):
    __tablename__ = "group"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True)
    description: str = Field(default="", max_length=200)


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=60, unique=True)
    full_name: str = Field(max_length=120)
    email: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    active: bool = True
    branch_id: int | None = Field(default=None, foreign_key="branch.id")
    # Set for a customer contact (see CUSTOMER_ROLE): every read and action is limited to this customer.
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)


def contact_groups_problem(groups: list[str] | tuple[str, ...], is_contact: bool) -> str | None:
    """Why these groups do not fit the user (None when they do): a customer contact holds exactly the customer
    group (no staff role may ride on a login a customer knows), and only a contact holds it."""
    if is_contact and set(groups) - {CUSTOMER_ROLE}:
        return f"a customer contact has the role {CUSTOMER_ROLE} and no other"
    if not is_contact and CUSTOMER_ROLE in groups:
        return f"the role {CUSTOMER_ROLE} is for customer contacts: give customer_code when creating the user"
    return None


class ApiToken(SQLModel, table=True):
    """A bearer token for a machine client. Only its sha256 is stored; the token is shown once at creation."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True)
    name: str = Field(max_length=60)
    token_sha256: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=12)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked: bool = False


# Argon2 through pwdlib, the hasher FastAPI's own docs recommend; one instance, its parameters are its defaults.
_password_hasher = None


def _hasher():
    global _password_hasher
    if _password_hasher is None:
        from pwdlib import PasswordHash

        _password_hasher = PasswordHash.recommended()
    return _password_hasher


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher().verify(password, password_hash)
