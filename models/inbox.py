"""The task inbox over the `human_task` read model: who sees which task, the views, filters, sorting, paging and
the counts on each view. The JSON API (api/inbox.py) and the pages (api/inbox_pages.py) both read through here.

Visibility: a user sees the tasks they may act on: those where they are a candidate by group or by name. The
activity that writes a task row also writes a `human_task_candidate` row for its assignee and its owner, with
the task's status copied on (models/approvals.replace_candidates), so "candidate, assignee or owner" is one
indexed lookup on (kind, name, status, task_id) and never a scan of JSON columns or of closed tasks. Admins see
every task.

Everything here reads; nothing flushes or commits (the caller owns the transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, literal_column, or_, select, true
from sqlmodel import Session

from models.approvals import ApprovalRequest, HumanTask, HumanTaskCandidate, SavedView, TaskStatus
from models.records import AuditEvent

ADMIN_GROUP = "admin"
OPEN = ("ready", "reserved")
CLOSED = ("completed", "skipped", "expired", "cancelled")
AT_RISK_WITHIN = timedelta(hours=24)
MAX_PAGE = 200
MAX_TEXT = 100

# The views, in the order the inbox shows them as tabs, with their labels.
VIEWS: dict[str, str] = {
    "my_tasks": "My tasks",
    "group_unclaimed": "My groups, unclaimed",
    "delegated_by_me": "Delegated by me",
    "overdue_and_at_risk": "Overdue and at risk",
    "completed_by_me": "Completed by me",
    "all_open": "All open",
}
DEFAULT_VIEW = "my_tasks"

# Sort keys: "due" oldest deadline first, "-due" latest first; "priority" means most urgent first.
SORTS: dict[str, Any] = {
    "due": HumanTask.due_at,
    "priority": HumanTask.priority,
    "created": HumanTask.created_at,
    "amount": HumanTask.amount,
    "completed": HumanTask.completed_at,
}
SORT_LABELS = {"due": "Due date", "priority": "Priority", "created": "Age", "amount": "Amount",
               "completed": "Completed"}
DEFAULT_SORT = {"completed_by_me": "-completed"}  # every other view: "due"


@dataclass(frozen=True)
class Viewer:
    """Who looks at the inbox, as the session established it."""

    username: str
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


@dataclass(frozen=True)
class InboxFilters:
    kind: str | None = None
    branch: str | None = None
    status: str | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    text: str | None = None

    def as_dict(self) -> dict[str, str]:
        """Plain text values (a saved view stores these; the pages put them in links)."""
        out: dict[str, str] = {}
        for name in ("kind", "branch", "status", "amount_min", "amount_max", "due_before", "due_after", "text"):
            value = getattr(self, name)
            if value in (None, ""):
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboxFilters:
        """From stored or typed values; anything malformed is dropped rather than refused (a saved view written
        by an older version still opens)."""

        def text(name: str, limit: int = MAX_TEXT) -> str | None:
            value = data.get(name)
            return str(value).strip()[:limit] or None if value not in (None, "") else None

        def number(name: str) -> Decimal | None:
            try:
                return Decimal(str(data[name])) if data.get(name) not in (None, "") else None
            except Exception:
                return None

        def moment(name: str, end_of_day: bool) -> datetime | None:
            return parse_moment(data.get(name), end_of_day=end_of_day)

        return cls(
            kind=text("kind", 40),
            branch=text("branch", 20),
            status=text("status", 20),
            amount_min=number("amount_min"),
            amount_max=number("amount_max"),
            due_before=moment("due_before", True),
            due_after=moment("due_after", False),
            text=text("text"),
        )


def parse_moment(value: Any, *, end_of_day: bool = False) -> datetime | None:
    """A date ("2026-03-01": the whole day counts) or a datetime, as aware UTC; None when malformed."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.max if end_of_day else time.min, UTC)
    raw = str(value).strip()
    try:
        if len(raw) == 10:
            return parse_moment(date.fromisoformat(raw), end_of_day=end_of_day)
        return parse_moment(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


# What a list shows of a task: plain rows of these columns (attribute access like a HumanTask), not ORM
# objects, which cost several times more to load for a page of 50.
LIST_COLUMNS = tuple(
    getattr(HumanTask, name) for name in (
        "id", "task_key", "request_key", "kind", "title", "document_ref", "step_name", "step_index", "round",
        "requester", "branch", "amount", "status", "outcome", "assignee", "owner", "delegation_state", "priority",
        "created_at", "follow_up_at", "escalate_at", "due_at", "completed_at", "completed_by", "acting_for",
        "candidate_groups", "candidate_users", "version",
    )
)


@dataclass
class InboxPage:
    view: str
    sort: str
    rows: list[Any]  # rows of LIST_COLUMNS
    total: int
    offset: int
    limit: int
    counts: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- visibility


def _my_candidacy(viewer: Viewer) -> ColumnElement[bool]:
    """Candidate rows that name the viewer or one of their groups."""
    c = HumanTaskCandidate
    me = and_(c.kind == "user", c.name == viewer.username)
    if not viewer.groups:
        return me
    return or_(me, and_(c.kind == "group", c.name.in_(sorted(viewer.groups))))


def _status_in(column, statuses: Sequence[str]) -> ColumnElement[bool]:
    """`column IN ('ready', 'reserved')` with the values written into the SQL, not bound: a partial index
    (ix_human_task_open) serves a query only when the planner can see that the query's condition implies the
    index's, which neither SQLite nor a generic PostgreSQL plan can with bind parameters. The values are our
    own constants, never input."""
    values = [literal_column(f"'{TaskStatus(s).value}'") for s in statuses]
    return column == values[0] if len(values) == 1 else column.in_(values)


def _open_candidate_ids(viewer: Viewer, statuses: Sequence[str] = OPEN) -> Select:
    """Ids of the tasks (of these statuses) where the viewer is a candidate by name or group: one range of
    ix_task_candidate_lookup (kind, name, status, task_id) per name, no task row read."""
    c = HumanTaskCandidate
    mine = select(c.task_id).where(c.kind == "user", c.name == viewer.username, _status_in(c.status, statuses))
    if not viewer.groups:
        return mine
    # Two ranges glued by UNION ALL, not one OR: PostgreSQL answers an OR with a bitmap scan that visits the
    # table for every row, each range alone from the index only (about 3x faster for a large group).
    return mine.union_all(
        select(c.task_id).where(c.kind == "group", c.name.in_(sorted(viewer.groups)), _status_in(c.status, statuses)))


def _mine_and_open(viewer: Viewer, statuses: Sequence[str] = OPEN, *, by_due: bool = False) -> ColumnElement[bool]:
    """Open tasks (of the given statuses) where the viewer is a candidate by group or by name.

    by_due: the open tasks' deadline index should drive (a deadline order or range) and the viewer's candidate
    rows only filter; `id + 0` keeps SQLite from driving by the candidate list instead."""
    task_id = HumanTask.id + 0 if by_due else HumanTask.id
    return and_(_status_in(HumanTask.status, statuses), task_id.in_(_open_candidate_ids(viewer, statuses)))


def _candidate_exists(viewer: Viewer) -> ColumnElement[bool]:
    """A probe of the task's own candidate rows (primary key task_id, kind, name), whatever its status."""
    c = HumanTaskCandidate
    return select(literal(1)).where(c.task_id == HumanTask.id, _my_candidacy(viewer)).exists()


def visible_to(viewer: Viewer) -> ColumnElement[bool]:
    """The tasks a viewer may see: candidate (group or name), assignee or owner; admins see all."""
    if viewer.is_admin:
        return true()
    return _candidate_exists(viewer)


def _is_open() -> ColumnElement[bool]:
    return _status_in(HumanTask.status, OPEN)


def view_condition(view: str, viewer: Viewer, now: datetime, sort: str | None = None) -> ColumnElement[bool]:
    """What a view holds. Every view but "completed by me" is bounded by the open tasks (a few percent of the
    table), never by the years of closed history: open tasks come from the partial index of open tasks
    (ix_human_task_open) or the (status, due_at) index, matched against the viewer's open candidate rows (one
    index range each); "my tasks", "delegated by me" and "completed by me" read their own index."""
    t = HumanTask
    me = viewer.username
    if view == "my_tasks":
        return and_(t.assignee == me, _is_open())
    if view == "group_unclaimed":
        # Deliberately not widened for admins: "my groups" means the groups the viewer is in.
        return _mine_and_open(viewer, ("ready",), by_due=_by_due(view, sort))
    if view == "delegated_by_me":
        return and_(_is_open(), t.owner == me, t.delegation_state == "pending", visible_to(viewer))
    if view == "overdue_and_at_risk":
        due = and_(t.due_at.is_not(None), t.due_at <= now + AT_RISK_WITHIN)
        return and_(_is_open(), due) if viewer.is_admin else and_(_mine_and_open(viewer, by_due=True), due)
    if view == "completed_by_me":
        return t.completed_by == me  # set by a decision only (expiry and cancellation leave it empty)
    if view == "all_open":
        return _is_open() if viewer.is_admin else _mine_and_open(viewer, by_due=_by_due(view, sort))
    raise ValueError(f"unknown inbox view {view!r}; use one of {', '.join(VIEWS)}")


def _by_due(view: str, sort: str | None) -> bool:
    return sort is not None and (view, sort.lstrip("-")) in INDEX_ORDERED


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_conditions(filters: InboxFilters) -> list[ColumnElement[bool]]:
    t = HumanTask
    where: list[ColumnElement[bool]] = []
    if filters.kind:
        where.append(t.kind == filters.kind)
    if filters.branch:
        where.append(t.branch == filters.branch)
    if filters.status:
        where.append(t.status == filters.status)
    if filters.amount_min is not None:
        where.append(t.amount >= filters.amount_min)
    if filters.amount_max is not None:
        where.append(t.amount <= filters.amount_max)
    if filters.due_before is not None:
        where.append(t.due_at <= filters.due_before)
    if filters.due_after is not None:
        where.append(t.due_at >= filters.due_after)
    if filters.text:
        pattern = f"%{_escape_like(filters.text.strip())}%"
        where.append(or_(*(col.ilike(pattern, escape="\\") for col in
                           (t.title, t.document_ref, t.requester, t.step_name, t.task_key))))
    return where


def normal_sort(view: str, sort: str | None) -> str:
    if sort and sort.lstrip("-") in SORTS:
        return sort
    return DEFAULT_SORT.get(view, "due")


# (view, sort key) pairs whose order an index gives, so the database reads the first page and stops. For any
# other sort the column is wrapped in a no-op, or SQLite would walk a whole index in that order (the created_at
# index, 100,000 rows) looking for the few rows of the view, instead of sorting the view's rows.
INDEX_ORDERED = {("group_unclaimed", "due"), ("overdue_and_at_risk", "due"), ("all_open", "due"),
                 ("completed_by_me", "completed")}


def _order_by(sort: str, view: str | None = None) -> list[Any]:
    key = sort.lstrip("-")
    column = SORTS[key]
    if (view, key) not in INDEX_ORDERED:
        column = func.coalesce(column, column)
    descending = sort.startswith("-")
    if key == "priority":
        descending = not descending  # "priority" reads as "most urgent first"
    ordered = column.desc() if descending else column.asc()
    # Tasks without a deadline come after those with one, whichever the direction. Not said for "completed by
    # me" in completion order, where every row has its completion time (a decision sets both): there the plain
    # order is the (completed_by, completed_at, id) index read backwards, and PostgreSQL would not see that
    # under an explicit NULLS LAST.
    if key in ("due", "completed") and (view, key) != ("completed_by_me", "completed"):
        ordered = ordered.nulls_last()
    return [ordered, HumanTask.id.desc() if descending else HumanTask.id.asc()]


# ------------------------------------------------------------------------------------------- reads


def search(
    session: Session,
    viewer: Viewer,
    *,
    view: str = DEFAULT_VIEW,
    filters: InboxFilters | None = None,
    sort: str | None = None,
    offset: int = 0,
    limit: int = 50,
    now: datetime | None = None,
    with_counts: bool = True,
) -> InboxPage:
    """One page of a view with the filters applied, its total, and the (unfiltered) count of every view."""
    now = now or datetime.now(UTC)
    if view not in VIEWS:
        raise ValueError(f"unknown inbox view {view!r}; use one of {', '.join(VIEWS)}")
    sort = normal_sort(view, sort)
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    conditions = filter_conditions(filters or InboxFilters())
    where = [view_condition(view, viewer, now, sort), *conditions]
    counts = view_counts(session, viewer, now) if with_counts else {}
    if counts and not conditions:
        total = counts[view]  # the same condition, already counted
    else:
        total = session.scalar(select(func.count()).select_from(HumanTask).where(*where)) or 0
    if offset >= total and total:
        offset = ((total - 1) // limit) * limit  # past the end: the last page
    # The page's ids are found and sorted on narrow rows (often straight from an index), then only those rows are
    # read whole: sorting whole rows (JSON columns and all) costs more than finding them. One statement.
    page_ids = (select(HumanTask.id).where(*where).order_by(*_order_by(sort, view)).offset(offset).limit(limit)
                .subquery())
    rows = list(session.execute(
        select(*LIST_COLUMNS).join(page_ids, page_ids.c.id == HumanTask.id).order_by(*_order_by(sort, view))))
    return InboxPage(view, sort, rows, total, offset, limit, counts)


def view_counts(session: Session, viewer: Viewer, now: datetime | None = None) -> dict[str, int]:
    """How many tasks each view holds, in one statement of one scalar subquery per view, each on its own index.

    "All open" and "my groups, unclaimed" come from the viewer's open candidate rows alone (the candidate rows
    carry the task's status: an index range, no task row read). An admin's "all open" is every open task,
    counted on the partial index of open tasks."""
    now = now or datetime.now(UTC)

    def scalar(stmt, name: str):
        return stmt.scalar_subquery().label(name)

    counted = {
        v: scalar(select(func.count()).select_from(HumanTask).where(view_condition(v, viewer, now)), v)
        for v in ("my_tasks", "delegated_by_me", "overdue_and_at_risk", "completed_by_me")
    }

    def distinct_tasks(ids: Select):
        # A task can reach the viewer twice (by name and by group): count tasks, not candidate rows.
        ids = ids.subquery()
        return select(func.count(func.distinct(ids.c.task_id)))

    counted["group_unclaimed"] = scalar(distinct_tasks(_open_candidate_ids(viewer, ("ready",))), "group_unclaimed")
    counted["all_open"] = scalar(
        select(func.count()).select_from(HumanTask).where(_is_open()) if viewer.is_admin
        else distinct_tasks(_open_candidate_ids(viewer)), "all_open")
    row = session.execute(select(*(counted[v] for v in VIEWS))).one()
    return {v: int(row._mapping[v] or 0) for v in VIEWS}


def visible_task(session: Session, viewer: Viewer, task_key: str) -> HumanTask | None:
    """The task if the viewer may see it; None both when it does not exist and when it is not theirs."""
    return session.scalars(select(HumanTask).where(HumanTask.task_key == task_key, visible_to(viewer))).first()


def visible_tasks(session: Session, viewer: Viewer, task_keys: Iterable[str]) -> dict[str, HumanTask]:
    keys = sorted(set(task_keys))
    if not keys:
        return {}
    rows = session.scalars(select(HumanTask).where(HumanTask.task_key.in_(keys), visible_to(viewer)))
    return {r.task_key: r for r in rows}


def approval_request(session: Session, request_key: str) -> ApprovalRequest | None:
    return session.scalars(select(ApprovalRequest).where(ApprovalRequest.request_key == request_key)).first()


def chain_tasks(session: Session, request_key: str) -> list[HumanTask]:
    """Every task of one approval request, in the order the chain opened them."""
    return list(session.scalars(
        select(HumanTask).where(HumanTask.request_key == request_key)
        .order_by(HumanTask.round, HumanTask.step_index, HumanTask.created_at, HumanTask.id)
    ))


def chain_history(session: Session, request_key: str, task_keys: Sequence[str], limit: int = 200) -> list[AuditEvent]:
    """The audit trail of a request and its tasks (actions and refused attempts), oldest first."""
    e = AuditEvent
    where = [and_(e.entity_kind == "approval_request", e.entity_id == request_key)]
    if task_keys:
        where.append(and_(e.entity_kind == "human_task", e.entity_id.in_(list(task_keys))))
    return list(session.scalars(select(e).where(or_(*where)).order_by(e.at, e.id).limit(limit)))


def earlier_approvers(tasks: Sequence[HumanTask]) -> set[str]:
    """Who already approved in this chain (and for whom): they may not approve again (segregation of duties)."""
    names: set[str] = set()
    for t in tasks:
        if t.status == "completed" and t.outcome == "approved":
            names.update(n for n in (t.completed_by, t.acting_for) if n)
    return names


@dataclass(frozen=True)
class Allowed:
    """What the viewer may try on a task, for showing the right buttons. The workflow's validators decide; this
    only spares people buttons that would surely be refused, and says why the decision buttons are missing."""

    claim: bool = False
    release: bool = False
    decide: bool = False
    delegate: bool = False
    resolve: bool = False
    forward: bool = False
    why_not: str = ""

    @property
    def any(self) -> bool:
        return any((self.claim, self.release, self.decide, self.delegate, self.resolve, self.forward))


def is_candidate(task: HumanTask, viewer: Viewer) -> bool:
    return viewer.username in (task.candidate_users or []) or bool(set(task.candidate_groups or []) & viewer.groups)


def allowed_actions(task: HumanTask, viewer: Viewer, approvers: set[str] | None = None) -> Allowed:
    me = viewer.username
    if task.status not in OPEN:
        return Allowed(why_not=f"This task is {task.status}.")
    candidate = is_candidate(task, viewer)
    mine = task.status == "reserved" and task.assignee == me
    delegated = task.delegation_state == "pending"
    party = ""
    if me == task.requester:
        party = "You requested this approval, so you may not decide it (segregation of duties)."
    elif approvers and me in approvers:
        party = "You approved an earlier step of this request, so you may not decide it again (segregation of duties)."
    decide = not party and (mine or (task.status == "ready" and candidate))
    why_not = party
    if not why_not and task.status == "reserved" and not mine:
        why_not = f"Claimed by {task.assignee}."
    elif not why_not and not decide and not candidate:
        why_not = "You are not a candidate for this task."
    return Allowed(
        claim=task.status == "ready" and (candidate or viewer.is_admin) and not party,
        release=task.status == "reserved" and not delegated and (mine or viewer.is_admin),
        decide=decide,
        delegate=mine or (viewer.is_admin and task.status == "reserved"),
        resolve=delegated and mine,
        forward=mine or (task.status == "ready" and candidate) or viewer.is_admin,
        why_not=why_not,
    )


def sla_state(task: HumanTask, now: datetime | None = None) -> str | None:
    """"overdue", "at_risk" (due within 24 h) or "on_track" for an open task with a deadline; else None."""
    if task.status not in OPEN or task.due_at is None:
        return None
    now = now or datetime.now(UTC)
    due = task.due_at if task.due_at.tzinfo else task.due_at.replace(tzinfo=UTC)
    if due <= now:
        return "overdue"
    if due <= now + AT_RISK_WITHIN:
        return "at_risk"
    return "on_track"


# ------------------------------------------------------------------------------------------- saved views


def saved_views(session: Session, viewer: Viewer) -> list[SavedView]:
    """The viewer's own views and those shared with a group they belong to."""
    shared = SavedView.shared_with_group.in_(sorted(viewer.groups)) if viewer.groups else false()
    return list(session.scalars(
        select(SavedView).where(or_(SavedView.owner == viewer.username, shared)).order_by(SavedView.name, SavedView.id)
    ))


def saved_view(session: Session, viewer: Viewer, view_id: int) -> SavedView | None:
    row = session.get(SavedView, view_id)
    if row is None:
        return None
    if row.owner == viewer.username or (row.shared_with_group and row.shared_with_group in viewer.groups):
        return row
    return None


def view_settings(row: SavedView) -> tuple[str, InboxFilters, str | None]:
    """(view, filters, sort) stored in a saved view."""
    data = dict(row.filters or {})
    view = data.get("view") if data.get("view") in VIEWS else DEFAULT_VIEW
    return view, InboxFilters.from_dict(data), data.get("sort") or None
