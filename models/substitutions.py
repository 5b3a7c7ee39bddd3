"""Out of office: who stands in for whom, and when. The rules every way in (JSON API, web page) shares.

A `Substitution` row says: from `starts_at` to `ends_at`, new tasks for `username` also go to `substitute`.
`ApprovalActivities.resolve_candidates` reads the rows when a task opens and follows them transitively (a
substitute who is away hands on to theirs). Tasks opened before a period starts are not moved: the substitute
is added to tasks that open while the period runs.

A new period is refused, naming the field, when the substitute is not an active user or is the person
themselves, when it ends before it starts or is already over, when it overlaps another period of the same
person (which substitute would count?), and when following the substitutes during the period leads back to the
person (a loop nobody outside of it would ever be handed). Periods are checked and written under one lock
(PostgreSQL: a transaction advisory lock; SQLite: BEGIN IMMEDIATE already serialises writers), so two requests
at once cannot build a loop or an overlap between them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import field_validator
from sqlalchemy import func, or_, select, text
from sqlmodel import Field, Session, SQLModel

from models.approvals import Substitution
from models.common import utcnow
from models.db import is_postgres
from models.users import User

# pg_advisory_xact_lock key for "substitution rows are being checked and written" (any constant bigint).
SUBSTITUTION_LOCK_KEY = 7_150_000_301
# resolve_candidates follows at most this many hand-overs; a chain is checked as deep.
MAX_CHAIN = 10


class SubstitutionState(StrEnum):
    upcoming = "upcoming"
    current = "current"
    past = "past"


def as_utc(moment: datetime) -> datetime:
    """Aware and in UTC; a time without an offset is taken as UTC (what the pages show)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class SubstitutionCreate(SQLModel):
    username: str | None = Field(
        default=None, max_length=60,
        description="who is away; defaults to the caller. Only admins may name someone else.",
    )
    substitute: str = Field(min_length=1, max_length=60, description="the active user who stands in")
    starts_at: datetime = Field(description="start of the absence (ISO 8601; without an offset it is UTC)")
    ends_at: datetime = Field(description="end of the absence, after starts_at (ISO 8601; without an offset UTC)")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @field_validator("username", "substitute")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if isinstance(value, str) else value


class SubstitutionPublic(SQLModel):
    id: int
    username: str
    substitute: str
    starts_at: datetime
    ends_at: datetime
    state: SubstitutionState
    created_by: str
    created_at: datetime


class SubstitutionRefused(ValueError):
    """A new period breaks a rule; `field` names the input at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def state_of(row: Substitution, now: datetime) -> SubstitutionState:
    if as_utc(row.ends_at) <= now:
        return SubstitutionState.past
    if as_utc(row.starts_at) <= now:
        return SubstitutionState.current
    return SubstitutionState.upcoming


def public(row: Substitution, now: datetime | None = None) -> SubstitutionPublic:
    now = now or utcnow()
    return SubstitutionPublic(
        id=row.id, username=row.username, substitute=row.substitute, starts_at=as_utc(row.starts_at),
        ends_at=as_utc(row.ends_at), state=state_of(row, now), created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )


def _stamp(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _active_user(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username, User.active.is_(True))).first()


def _loop_back(session: Session, username: str, substitute: str, starts_at: datetime,
               ends_at: datetime) -> tuple[list[str], datetime, datetime] | None:
    """The chain of hand-overs that would lead from `substitute` back to `username` at some moment of the new
    period, with that moment's window; None when there is none. Follows periods that overlap the window still
    open, as resolve_candidates follows the periods in force at one instant."""
    overlapping = session.scalars(
        select(Substitution).where(Substitution.starts_at < ends_at, Substitution.ends_at > starts_at)
    ).all()
    hands_on: dict[str, list[Substitution]] = defaultdict(list)
    for row in overlapping:
        hands_on[row.username].append(row)

    def walk(person: str, low: datetime, high: datetime, path: list[str]):
        if len(path) > MAX_CHAIN:
            return None
        for row in sorted(hands_on.get(person, ()), key=lambda r: (as_utc(r.starts_at), r.id)):
            window_low, window_high = max(low, as_utc(row.starts_at)), min(high, as_utc(row.ends_at))
            if window_low >= window_high:
                continue
            if row.substitute == username:
                return [*path, username], window_low, window_high
            if row.substitute not in path:
                found = walk(row.substitute, window_low, window_high, [*path, row.substitute])
                if found:
                    return found
        return None

    return walk(substitute, starts_at, ends_at, [username, substitute])


def check_substitution(session: Session, *, username: str, substitute: str, starts_at: datetime,
                       ends_at: datetime, now: datetime | None = None, for_self: bool = True) -> None:
    """Raise SubstitutionRefused (field, reason) for the first rule the new period breaks."""
    now = now or utcnow()
    starts_at, ends_at = as_utc(starts_at), as_utc(ends_at)
    if _active_user(session, username) is None:
        raise SubstitutionRefused("username", f"there is no active user {username!r}")
    if substitute == username:
        who = "you cannot stand in for yourself" if for_self else f"{username} cannot stand in for themselves"
        raise SubstitutionRefused("substitute", f"{who}: name someone else")
    if _active_user(session, substitute) is None:
        raise SubstitutionRefused("substitute", f"there is no active user {substitute!r} to stand in")
    if ends_at <= starts_at:
        raise SubstitutionRefused("ends_at", "the end must be after the start")
    if ends_at <= now:
        raise SubstitutionRefused("ends_at", f"the period is already over (it ended {_stamp(ends_at)})")
    clash = session.scalars(
        select(Substitution)
        .where(Substitution.username == username, Substitution.starts_at < ends_at,
               Substitution.ends_at > starts_at)
        .order_by(Substitution.starts_at)
    ).first()
    if clash is not None:
        whose = "your" if for_self else f"{username}'s"
        raise SubstitutionRefused(
            "starts_at",
            f"overlaps {whose} period from {_stamp(clash.starts_at)} to {_stamp(clash.ends_at)} "
            f"(substitute {clash.substitute}); change or delete that one first",
        )
    loop = _loop_back(session, username, substitute, starts_at, ends_at)
    if loop is not None:
        path, low, high = loop
        raise SubstitutionRefused(
            "substitute",
            f"the substitutes would loop back to {username} between {_stamp(low)} and {_stamp(high)}: "
            f"{' → '.join(path)}",
        )


def create_substitution(session: Session, *, username: str, substitute: str, starts_at: datetime,
                        ends_at: datetime, created_by: str, now: datetime | None = None) -> Substitution:
    """Check and add a period (flushes, never commits)."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SUBSTITUTION_LOCK_KEY})
    check_substitution(session, username=username, substitute=substitute, starts_at=starts_at, ends_at=ends_at,
                       now=now, for_self=created_by == username)
    row = Substitution(username=username, substitute=substitute, starts_at=as_utc(starts_at),
                       ends_at=as_utc(ends_at), created_by=created_by)
    session.add(row)
    session.flush()
    return row


def visible_substitutions(session: Session, *, viewer: str, is_admin: bool, username: str | None = None,
                          include_past: bool = False, now: datetime | None = None, offset: int = 0,
                          limit: int = 50) -> tuple[list[Substitution], int]:
    """The periods a person may see (their own, those they stand in for, those they entered; admins: all),
    soonest first, with the total."""
    now = now or utcnow()
    stmt = select(Substitution)
    if not is_admin:
        stmt = stmt.where(or_(Substitution.username == viewer, Substitution.substitute == viewer,
                              Substitution.created_by == viewer))
    if username:
        stmt = stmt.where(Substitution.username == username)
    if not include_past:
        stmt = stmt.where(Substitution.ends_at > now)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Substitution.starts_at, Substitution.id).offset(offset).limit(limit)
    ).all()
    return list(rows), total


def may_delete(row: Substitution, viewer: str, is_admin: bool) -> bool:
    """The person away, whoever entered the period, and admins may remove it (a substitute may not)."""
    return is_admin or viewer in (row.username, row.created_by)


def may_see(row: Substitution, viewer: str, is_admin: bool) -> bool:
    return is_admin or viewer in (row.username, row.substitute, row.created_by)
