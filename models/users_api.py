"""API data models for people and machine clients (no table=True: these never create tables)."""

from __future__ import annotations

from datetime import datetime

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from models.users import GROUPS


def _known_roles(groups: list[str] | None) -> list[str] | None:
    if groups is None:
        return None
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    return sorted(set(groups))


class UserBase(SQLModel):
    username: str = Field(max_length=60)
    full_name: str = Field(max_length=120)
    email: str = Field(max_length=200)
    branch_id: int | None = None


class UserCreate(UserBase):
    """Formats are checked here, on the way in, and not on the way out (UserPublic)."""

    username: str = Field(min_length=2, max_length=60, schema_extra={"pattern": r"^[A-Za-z0-9_.@-]+$"})
    full_name: str = Field(min_length=1, max_length=120)
    email: str = Field(min_length=3, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    password: str = Field(min_length=10, max_length=200)
    groups: list[str] = Field(default_factory=list)
    customer_code: str | None = Field(
        default=None, min_length=1, max_length=20,
        description="makes the user a contact of this customer: the portal and that customer's quotes only "
                    "(groups: none or just \"customer\")")

    _check_groups = field_validator("groups")(_known_roles)


class UserUpdate(SQLModel):
    full_name: str | None = Field(default=None, min_length=1, max_length=120)
    email: str | None = Field(default=None, min_length=3, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    password: str | None = Field(default=None, min_length=10, max_length=200)
    active: bool | None = None
    branch_id: int | None = None


class UserGroupsUpdate(SQLModel):
    groups: list[str]

    _check_groups = field_validator("groups")(_known_roles)


class UserPublic(UserBase):
    id: int
    active: bool
    created_at: datetime
    groups: list[str]
    customer_code: str | None = Field(default=None, description="set for a customer contact")


class ApiTokenCreate(SQLModel):
    name: str = Field(min_length=1, max_length=60)


class ApiTokenPublic(SQLModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class ApiTokenCreated(ApiTokenPublic):
    token: str = Field(description="the bearer token; shown once, only its sha256 is stored")
