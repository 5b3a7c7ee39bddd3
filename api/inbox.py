"""The task inbox as JSON (/api/v1/tasks, /api/v1/inbox-views, /api/v1/approvals/.../resubmit), and the one
service every inbox action goes through, from this API and from the pages (api/inbox_pages.py) alike.

An action (claim, release, resolve, delegate, forward, decide, resubmit) is:
1. the task row looked up under the caller's visibility (not visible: 404, the same answer as "no such task");
2. an Actor built from the session's user and their groups as the database holds them (never from the request);
3. a Temporal Update to the task's workflow, whose validator accepts or refuses at once; the handler returns only
   after the inbox row says the same, so the next list the caller reads is already right;
4. a refusal mapped to a status (409 conflict, 403 not allowed, 422 bad command, 503 engine unreachable) and
   written to the audit trail (actor, action, task, reason). Accepted actions are audited by the workflow's own
   activity, in the transaction that writes the row.

Database reads end their transaction before any Temporal call: on SQLite a transaction holds the write lock
(BEGIN IMMEDIATE) that the workflow's activity needs to write the row the update waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.audit import audit
from api.deps import CsrfProtected, CurrentUser, SessionDep, SettingsDep, current_roles
from api.health import get_temporal_client
from api.routes.common import invalid
from models import inbox
from models.approvals import ApprovalRequest, HumanTask, SavedView
from models.users import Group, User
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.approval_rules import RequestFacts
from workflows.contracts import (
    Actor,
    DecideCommand,
    DelegateCommand,
    ForwardCommand,
    ResubmitCommand,
    TaskCommand,
    TaskView,
)

router = APIRouter(prefix="/api/v1", tags=["inbox"], dependencies=[CsrfProtected])

# How long one action may wait for the workflow's answer (a validator answers in milliseconds; a missing worker
# never answers).
UPDATE_TIMEOUT_SECONDS = 20.0
BULK_MAX = 100
BULK_CONCURRENCY = 8

# Refusal types the workflow's validators raise -> HTTP status.
REFUSAL_STATUS: dict[str, int] = {
    "TaskNotFound": status.HTTP_404_NOT_FOUND,
    "NotVisible": status.HTTP_404_NOT_FOUND,
    "TaskAlreadyClaimed": status.HTTP_409_CONFLICT,
    "StaleVersion": status.HTTP_409_CONFLICT,
    "TaskNotOpen": status.HTTP_409_CONFLICT,
    "TaskNotClaimed": status.HTTP_409_CONFLICT,
    "NotAllowed": status.HTTP_403_FORBIDDEN,
    "SegregationOfDuties": status.HTTP_403_FORBIDDEN,
    "CommentRequired": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "InvalidCommand": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "Unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
}
REFUSAL_HEADER = "X-Refusal-Reason"
OUTCOMES = ("approved", "rejected", "changes_requested")
ACTIONS = ("claim", "release", "resolve", "delegate", "forward", "decide")


# ------------------------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class TaskAction:
    """What someone asks to do with one task. The actor is not in here: it comes from the session."""

    action: str  # one of ACTIONS
    task_key: str
    expected_version: int | None = None
    comment: str = ""
    outcome: str | None = None  # decide
    to_user: str | None = None  # delegate
    to_groups: tuple[str, ...] = ()  # forward
    to_users: tuple[str, ...] = ()  # forward
    update_id: str | None = None  # idempotency: the same id twice runs once (Temporal update id)

    @property
    def label(self) -> str:
        return self.outcome if self.action == "decide" and self.outcome else self.action


@dataclass
class ActionOutcome:
    task_key: str
    action: str
    ok: bool
    view: TaskView | None = None
    status_code: int = status.HTTP_200_OK
    reason: str = ""
    message: str = ""
    task: HumanTask | None = None  # the row as it was looked up (what the pages name the task by)


class Refusal(Exception):
    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.reason, self.message = status_code, reason, message

    def http(self) -> HTTPException:
        return HTTPException(self.status_code, detail=self.message, headers={REFUSAL_HEADER: self.reason})


ClientSource = Callable[[], Awaitable[Client]]


def viewer_of(user: User, roles: frozenset[str]) -> inbox.Viewer:
    return inbox.Viewer(user.username, frozenset(roles))


def actor_of(viewer: inbox.Viewer) -> Actor:
    return Actor(viewer.username, tuple(sorted(viewer.groups)))


def _refused(action: TaskAction, reason: str, message: str, task: HumanTask | None = None) -> ActionOutcome:
    return ActionOutcome(action.task_key, action.label, False, status_code=REFUSAL_STATUS.get(reason, 409),
                         reason=reason, message=message, task=task)


def _prepare(
    session: Session, viewer: inbox.Viewer, actions: Sequence[TaskAction]
) -> tuple[dict[str, HumanTask], dict[int, ActionOutcome]]:
    """One read for every task asked about; refusals that need no workflow (not visible, closed, bad target)."""
    try:
        rows = inbox.visible_tasks(session, viewer, (a.task_key for a in actions))
        early: dict[int, ActionOutcome] = {}
        wanted_users = {a.to_user for a in actions if a.to_user} | {u for a in actions for u in a.to_users}
        wanted_groups = {g for a in actions for g in a.to_groups}
        users = set(session.scalars(select(User.username).where(User.username.in_(sorted(wanted_users)),
                                                                User.active.is_(True)))) if wanted_users else set()
        groups = set(session.scalars(select(Group.name).where(Group.name.in_(sorted(wanted_groups))))) \
            if wanted_groups else set()
        for i, a in enumerate(actions):
            row = rows.get(a.task_key)
            if row is None:
                early[i] = _refused(a, "NotVisible", f"task {a.task_key} not found")
            elif row.status not in inbox.OPEN:
                state = getattr(row.status, "value", row.status)
                early[i] = _refused(a, "TaskNotOpen", f"task {a.task_key} is {state}, not open", row)
            elif a.action == "delegate" and a.to_user not in users:
                early[i] = _refused(a, "InvalidCommand", f"no active user {a.to_user!r} to delegate to", row)
            elif a.action == "forward" and (set(a.to_users) - users or set(a.to_groups) - groups):
                unknown = sorted((set(a.to_users) - users) | (set(a.to_groups) - groups))
                early[i] = _refused(a, "InvalidCommand", f"unknown user or group: {', '.join(unknown)}", row)
        for row in rows.values():
            session.expunge(row)  # keeps its loaded values: no lazy refresh (a new transaction) after the commit
        return rows, early
    finally:
        session.commit()  # end the read transaction before Temporal is called (see the module docstring)


def _command(action: TaskAction, actor: Actor):
    a = action
    if a.action in ("claim", "release", "resolve"):
        method = {"claim": ApprovalChainWorkflow.claim, "release": ApprovalChainWorkflow.release,
                  "resolve": ApprovalChainWorkflow.resolve}[a.action]
        return method, TaskCommand(a.task_key, actor, a.expected_version, a.comment)
    if a.action == "delegate":
        return ApprovalChainWorkflow.delegate, DelegateCommand(a.task_key, actor, a.to_user or "", a.comment,
                                                               a.expected_version)
    if a.action == "forward":
        return ApprovalChainWorkflow.forward, ForwardCommand(a.task_key, actor, a.to_groups, a.to_users, a.comment,
                                                             a.expected_version)
    if a.action == "decide":
        return ApprovalChainWorkflow.decide, DecideCommand(a.task_key, actor, a.outcome or "", a.comment,
                                                           a.expected_version)
    raise ValueError(f"unknown task action {a.action!r}")


async def _execute(client: Client, workflow_id: str, method, command, update_id: str | None) -> Any:
    """Send one update; a refusal becomes a Refusal with the validator's type and message."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(UPDATE_TIMEOUT_SECONDS):
            return await handle.execute_update(method, command, id=update_id)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            return_type = cause.type or "Refused"
            raise Refusal(REFUSAL_STATUS.get(return_type, status.HTTP_409_CONFLICT), return_type, cause.message) \
                from None
        raise Refusal(status.HTTP_409_CONFLICT, "Refused", str(cause or err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refusal(status.HTTP_409_CONFLICT, "TaskNotOpen",
                          "the approval process of this task has ended") from None
        raise Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "Unavailable",
                      f"the approval engine (Temporal) did not accept the request: {err.message}") from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "Unavailable",
                      "the approval engine did not answer in time; is a worker running? Try again shortly") from None


async def _client_or_refusal(client_source: ClientSource) -> Client:
    try:
        return await client_source()
    except HTTPException as exc:
        raise Refusal(exc.status_code, "Unavailable", str(exc.detail)) from None


def _record_refusals(session: Session, viewer: inbox.Viewer, outcomes: Sequence[ActionOutcome],
                     actions: Sequence[TaskAction]) -> None:
    """Every refused attempt into the audit trail, in one transaction (an unreachable engine is no refusal)."""
    wrote = False
    for outcome, action in zip(outcomes, actions, strict=True):
        if outcome.ok or outcome.reason == "Unavailable":
            continue
        audit(session, actor=viewer.username, action=f"task.{action.label}.refused", entity_kind="human_task",
              entity_id=action.task_key, reason=f"{outcome.reason}: {outcome.message}",
              data={"reason": outcome.reason, "status": outcome.status_code,
                    "expected_version": action.expected_version,
                    "version": outcome.task.version if outcome.task else None,
                    "groups": sorted(viewer.groups)})
        wrote = True
    if wrote:
        session.commit()


async def perform_many(session: Session, client_source: ClientSource, viewer: inbox.Viewer,
                       actions: Sequence[TaskAction]) -> list[ActionOutcome]:
    """Carry out task actions for one viewer; one outcome per action, in order, each ok or refused with why."""
    rows, early = await run_in_threadpool(_prepare, session, viewer, actions)
    actor = actor_of(viewer)
    outcomes: list[ActionOutcome | None] = [early.get(i) for i in range(len(actions))]
    pending = [i for i, o in enumerate(outcomes) if o is None]
    if pending:
        try:
            client = await _client_or_refusal(client_source)
        except Refusal as refusal:
            for i in pending:
                outcomes[i] = _refused(actions[i], refusal.reason, refusal.message, rows.get(actions[i].task_key))
            pending = []
        limit = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(i: int) -> None:
            a = actions[i]
            row = rows[a.task_key]
            method, command = _command(a, actor)
            async with limit:
                try:
                    view = await _execute(client, row.workflow_id, method, command, a.update_id)
                except Refusal as refusal:
                    outcomes[i] = _refused(a, refusal.reason, refusal.message, row)
                    return
            outcomes[i] = ActionOutcome(a.task_key, a.label, True, view=view, task=row)

        await asyncio.gather(*(one(i) for i in pending))
    done = [o for o in outcomes if o is not None]
    await run_in_threadpool(_record_refusals, session, viewer, done, actions)
    return done


async def perform(session: Session, client_source: ClientSource, viewer: inbox.Viewer, action: TaskAction) -> TaskView:
    """One task action; raises Refusal when it is refused."""
    [outcome] = await perform_many(session, client_source, viewer, [action])
    if not outcome.ok:
        raise Refusal(outcome.status_code, outcome.reason, outcome.message)
    return outcome.view


async def resubmit(session: Session, client_source: ClientSource, viewer: inbox.Viewer, request_key: str,
                   comment: str = "", facts: dict[str, Any] | None = None) -> str:
    """The requester sends a request back into its chain after "request changes"; raises Refusal."""

    def prepare() -> ApprovalRequest | None:
        try:
            row = inbox.approval_request(session, request_key)
            if row is None or not (row.requester == viewer.username or viewer.is_admin):
                return None
            session.expunge(row)
            return row
        finally:
            session.commit()

    def record(reason: str, message: str) -> None:
        audit(session, actor=viewer.username, action="approval.resubmit.refused", entity_kind="approval_request",
              entity_id=request_key, reason=f"{reason}: {message}", data={"reason": reason})
        session.commit()

    row = await run_in_threadpool(prepare)  # detached: its values stay readable without a new transaction
    try:
        if row is None:
            raise Refusal(status.HTTP_404_NOT_FOUND, "NotVisible", f"approval request {request_key} not found")
        new_facts = _merged_facts(row, facts) if facts else None
        client = await _client_or_refusal(client_source)
        command = ResubmitCommand(actor_of(viewer), comment, new_facts)
        return await _execute(client, row.workflow_id, ApprovalChainWorkflow.resubmit, command, None)
    except Refusal as refusal:
        if refusal.reason != "Unavailable":
            await run_in_threadpool(record, refusal.reason, refusal.message)
        raise


def _merged_facts(row: ApprovalRequest, changes: dict[str, Any]) -> RequestFacts:
    stored = dict(row.facts or {})
    merged = {**stored, **{k: v for k, v in changes.items() if v is not None}}
    return RequestFacts(
        amount=Decimal(str(merged.get("amount", row.amount))),
        discount_percent=Decimal(str(merged.get("discount_percent", 0))),
        margin_percent=Decimal(str(merged.get("margin_percent", 100))),
        customer_segment=str(merged.get("customer_segment", "")),
        category=str(merged.get("category", "")),
        branch=str(merged.get("branch", row.branch)),
        requester=row.requester,  # never from the request body
    )


# ------------------------------------------------------------------------------------------- API models


class TaskSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    task_key: str
    request_key: str
    kind: str
    title: str
    document_ref: str
    step_name: str
    step_index: int
    round: int
    requester: str
    branch: str
    amount: Decimal
    status: str
    outcome: str | None
    assignee: str | None
    owner: str | None
    delegation_state: str
    priority: int
    created_at: datetime
    follow_up_at: datetime | None
    escalate_at: datetime | None
    due_at: datetime | None
    completed_at: datetime | None
    completed_by: str | None
    acting_for: str | None
    candidate_groups: list[str]
    candidate_users: list[str]
    version: int
    sla: Literal["overdue", "at_risk", "on_track"] | None = Field(
        None, description="open tasks with a deadline: overdue, at_risk (due within 24 h) or on_track")


class TaskPage(BaseModel):
    items: list[TaskSummary]
    total: int = Field(description="tasks in this view that match the filters")
    offset: int
    limit: int
    view: str
    sort: str
    counts: dict[str, int] = Field(description="tasks in each view, without the filters")


class AllowedActions(BaseModel):
    claim: bool
    release: bool
    decide: bool
    delegate: bool
    resolve: bool
    forward: bool
    why_not: str = Field("", description="why deciding is not offered, when it is not")


class ChainTask(TaskSummary):
    comment: str


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    acting_for: str | None
    action: str
    entity_id: str
    reason: str


class RequestInfo(BaseModel):
    request_key: str
    kind: str
    document_ref: str
    title: str
    requester: str
    branch: str
    amount: Decimal
    status: str
    policy_version: int | None
    created_at: datetime
    decided_at: datetime | None
    details: dict[str, Any] = Field(description="what the approver sees (lines, prices, exposure ...)")
    facts: dict[str, Any] = Field(description="the facts the policy routed on")


class TaskDetail(TaskSummary):
    comment: str
    escalation_level: int
    policy_kind: str
    policy_version: int | None
    rule_ids: list[str]
    why: str = Field(description="why this task reached you: policy, version, rules and candidates")
    request: RequestInfo | None
    chain: list[ChainTask] = Field(description="every task of the same request, in chain order")
    history: list[HistoryEntry] = Field(description="audit trail of the request and its tasks, oldest first")
    allowed: AllowedActions


class TaskViewOut(BaseModel):
    """The task right after the action (the inbox row already says the same)."""

    task_key: str
    status: str
    outcome: str | None
    assignee: str | None
    owner: str | None
    delegation_state: str
    candidate_groups: list[str]
    candidate_users: list[str]
    version: int

    @classmethod
    def of(cls, view: TaskView) -> TaskViewOut:
        return cls(task_key=view.task_key, status=view.status, outcome=view.outcome, assignee=view.assignee,
                   owner=view.owner, delegation_state=view.delegation_state,
                   candidate_groups=list(view.candidate_groups), candidate_users=list(view.candidate_users),
                   version=view.version)


Comment = Annotated[str, Field(max_length=2000)]
Version = Annotated[int | None, Field(None, ge=1, description="refuse (409) if the task changed since this version")]


class TaskActionIn(BaseModel):
    expected_version: Version = None
    comment: Comment = ""


class DelegateIn(TaskActionIn):
    to_user: str = Field(min_length=1, max_length=60)


class ForwardIn(TaskActionIn):
    to_groups: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=20)
    to_users: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(default_factory=list, max_length=20)


class DecisionIn(TaskActionIn):
    outcome: Literal["approved", "rejected", "changes_requested"]


class BulkDecisionIn(BaseModel):
    task_keys: list[Annotated[str, Field(min_length=1, max_length=160)]] = Field(min_length=1, max_length=BULK_MAX)
    outcome: Literal["approved", "rejected", "changes_requested"] = "approved"
    comment: Comment = ""


class BulkItem(BaseModel):
    task_key: str
    ok: bool
    status_code: int
    reason: str = Field("", description="refusal type, e.g. SegregationOfDuties, TaskAlreadyClaimed")
    message: str = ""
    task: TaskViewOut | None = None


class BulkResult(BaseModel):
    results: list[BulkItem]
    succeeded: int
    refused: int


class FactsIn(BaseModel):
    amount: Decimal | None = Field(None, ge=0, max_digits=16, decimal_places=2)
    discount_percent: Decimal | None = Field(None, ge=0, le=100)
    margin_percent: Decimal | None = Field(None, ge=-1000, le=100)
    customer_segment: str | None = Field(None, max_length=40)
    category: str | None = Field(None, max_length=120)
    branch: str | None = Field(None, max_length=20)


class ResubmitIn(BaseModel):
    comment: Comment = ""
    facts: FactsIn | None = Field(None, description="changed facts, when the request itself was edited")


class ResubmitOut(BaseModel):
    request_key: str
    status: str


class InboxFiltersIn(BaseModel):
    kind: str | None = Field(None, max_length=40)
    branch: str | None = Field(None, max_length=20)
    status: Literal["ready", "reserved", "completed", "skipped", "expired", "cancelled"] | None = None
    amount_min: Decimal | None = Field(None, ge=0)
    amount_max: Decimal | None = Field(None, ge=0)
    due_before: str | None = Field(None, max_length=40, description="date or datetime (ISO 8601)")
    due_after: str | None = Field(None, max_length=40, description="date or datetime (ISO 8601)")
    text: str | None = Field(None, max_length=inbox.MAX_TEXT)


ViewName = Literal[
    "my_tasks", "group_unclaimed", "delegated_by_me", "overdue_and_at_risk", "completed_by_me", "all_open"
]
SortName = Literal["due", "-due", "priority", "-priority", "created", "-created", "amount", "-amount",
                   "completed", "-completed"]


class SavedViewIn(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    view: ViewName = "my_tasks"
    sort: SortName | None = None
    filters: InboxFiltersIn = Field(default_factory=InboxFiltersIn)
    shared_with_group: str | None = Field(None, max_length=40, description="a group you belong to")


class SavedViewOut(BaseModel):
    id: int
    name: str
    owner: str
    shared_with_group: str | None
    view: str
    sort: str | None
    filters: dict[str, str]
    mine: bool


class Problem(BaseModel):
    detail: str


REFUSALS = {
    403: {"model": Problem, "description": "not allowed (NotAllowed, SegregationOfDuties); see X-Refusal-Reason"},
    404: {"model": Problem, "description": "no such task, or not one you may see"},
    409: {"model": Problem, "description": "conflict: claimed by someone else, stale version, task not open"},
    422: {"description": "bad command: a comment is required, an unknown user or group ..."},
    503: {"model": Problem, "description": "the approval engine (Temporal) cannot be reached"},
}


# ------------------------------------------------------------------------------------------- converters


def task_summary(row: HumanTask, now: datetime | None = None, cls: type[TaskSummary] = TaskSummary, **extra):
    data = {name: getattr(row, name) for name in TaskSummary.model_fields if name != "sla"}
    for name in ("status", "outcome", "delegation_state"):
        value = data[name]
        data[name] = getattr(value, "value", value)
    data["sla"] = inbox.sla_state(row, now)
    return cls(**data, **extra)


def why_text(row: HumanTask) -> str:
    rules = ", ".join(row.rule_ids or []) or "none recorded"
    who = ", ".join([*(f"group {g}" for g in row.candidate_groups or []), *(row.candidate_users or [])]) or "nobody"
    return f"{row.policy_kind or row.kind} policy v{row.policy_version or '?'}, rule {rules}; candidates: {who}"


def task_detail(session: Session, viewer: inbox.Viewer, row: HumanTask) -> TaskDetail:
    request = inbox.approval_request(session, row.request_key)
    chain = inbox.chain_tasks(session, row.request_key)
    history = inbox.chain_history(session, row.request_key, [t.task_key for t in chain])
    allowed = inbox.allowed_actions(row, viewer, inbox.earlier_approvers(chain))
    info = None
    if request is not None:
        info = RequestInfo(
            request_key=request.request_key, kind=request.kind, document_ref=request.document_ref,
            title=request.title, requester=request.requester, branch=request.branch, amount=request.amount,
            status=getattr(request.status, "value", request.status), policy_version=request.policy_version,
            created_at=request.created_at, decided_at=request.decided_at, details=request.details or {},
            facts=request.facts or {},
        )
    return task_summary(
        row, cls=TaskDetail, comment=row.comment, escalation_level=row.escalation_level, policy_kind=row.policy_kind,
        policy_version=row.policy_version, rule_ids=list(row.rule_ids or []), why=why_text(row), request=info,
        chain=[task_summary(t, cls=ChainTask, comment=t.comment) for t in chain],
        history=[HistoryEntry(at=e.at, actor=e.actor, acting_for=e.acting_for, action=e.action,
                              entity_id=e.entity_id, reason=e.reason) for e in history],
        allowed=AllowedActions(claim=allowed.claim, release=allowed.release, decide=allowed.decide,
                               delegate=allowed.delegate, resolve=allowed.resolve, forward=allowed.forward,
                               why_not=allowed.why_not),
    )


def saved_view_out(row: SavedView, viewer: inbox.Viewer) -> SavedViewOut:
    view, filters, sort = inbox.view_settings(row)
    return SavedViewOut(id=row.id, name=row.name, owner=row.owner, shared_with_group=row.shared_with_group,
                        view=view, sort=sort, filters=filters.as_dict(), mine=row.owner == viewer.username)


# ------------------------------------------------------------------------------------------- routes


def _viewer(request: Request, user: User) -> inbox.Viewer:
    return viewer_of(user, current_roles(request))


def _client_source(request: Request, settings) -> ClientSource:
    return lambda: get_temporal_client(request, settings)


def _moment(value: str | None, name: str, *, end_of_day: bool) -> datetime | None:
    if value in (None, ""):
        return None
    moment = inbox.parse_moment(value, end_of_day=end_of_day)
    if moment is None:
        raise invalid(name, "not a date (YYYY-MM-DD) or an ISO 8601 datetime", where="query", value=value)
    return moment


@router.get("/tasks", response_model=TaskPage, summary="Search the inbox")
def list_tasks(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    view: ViewName = "my_tasks",
    kind: Annotated[str | None, Query(max_length=40)] = None,
    branch: Annotated[str | None, Query(max_length=20)] = None,
    task_status: Annotated[
        Literal["ready", "reserved", "completed", "skipped", "expired", "cancelled"] | None, Query(alias="status")
    ] = None,
    amount_min: Annotated[Decimal | None, Query(ge=0)] = None,
    amount_max: Annotated[Decimal | None, Query(ge=0)] = None,
    due_before: Annotated[str | None, Query(max_length=40, description="date or ISO datetime")] = None,
    due_after: Annotated[str | None, Query(max_length=40, description="date or ISO datetime")] = None,
    q: Annotated[str | None, Query(max_length=inbox.MAX_TEXT, description="text in title, document, requester")] = None,
    sort: SortName | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=inbox.MAX_PAGE)] = 50,
    saved_view: Annotated[int | None, Query(description="apply a saved view (its view, filters and sort)")] = None,
) -> TaskPage:
    """Tasks of one view (`my_tasks`, `group_unclaimed`, `delegated_by_me`, `overdue_and_at_risk`,
    `completed_by_me`, `all`) that you may see, filtered, sorted and paged, with the count of every view."""
    viewer = _viewer(request, user)
    filters = inbox.InboxFilters(
        kind=kind, branch=branch, status=task_status, amount_min=amount_min, amount_max=amount_max,
        due_before=_moment(due_before, "due_before", end_of_day=True),
        due_after=_moment(due_after, "due_after", end_of_day=False), text=q,
    )
    if saved_view is not None:
        stored = inbox.saved_view(session, viewer, saved_view)
        if stored is None:
            raise HTTPException(404, detail=f"saved view {saved_view} not found")
        view, filters, stored_sort = inbox.view_settings(stored)
        sort = sort or stored_sort
    page = inbox.search(session, viewer, view=view, filters=filters, sort=sort, offset=offset, limit=limit)
    # Built before the commit: a commit expires the rows, and reading them afterwards would re-select each one.
    answer = TaskPage(items=[task_summary(r) for r in page.rows], total=page.total, offset=page.offset,
                      limit=page.limit, view=page.view, sort=page.sort, counts=page.counts)
    session.commit()
    return answer


@router.post("/tasks/bulk-decision", response_model=BulkResult, responses={503: REFUSALS[503]})
async def bulk_decision(body: BulkDecisionIn, request: Request, session: SessionDep, user: CurrentUser,
                        settings: SettingsDep) -> BulkResult:
    """Decide several tasks at once. Each goes through its own validation (version, claim, segregation of
    duties); the answer lists, per task, whether it went through or why it was refused."""
    viewer = _viewer(request, user)
    keys = list(dict.fromkeys(body.task_keys))
    actions = [TaskAction("decide", k, outcome=body.outcome, comment=body.comment) for k in keys]
    outcomes = await perform_many(session, _client_source(request, settings), viewer, actions)
    items = [BulkItem(task_key=o.task_key, ok=o.ok, status_code=o.status_code, reason=o.reason, message=o.message,
                      task=TaskViewOut.of(o.view) if o.view else None) for o in outcomes]
    ok = sum(1 for i in items if i.ok)
    return BulkResult(results=items, succeeded=ok, refused=len(items) - ok)


@router.get("/tasks/{task_key:path}", response_model=TaskDetail, responses={404: REFUSALS[404]})
def get_task(task_key: str, request: Request, session: SessionDep, user: CurrentUser) -> TaskDetail:
    """One task with its request in full, why it reached you, the chain so far and what you may do."""
    viewer = _viewer(request, user)
    row = inbox.visible_task(session, viewer, task_key)
    if row is None:
        raise HTTPException(404, detail=f"task {task_key} not found")
    detail = task_detail(session, viewer, row)
    session.commit()
    return detail


async def _act(request: Request, session: Session, user: User, settings, action: TaskAction) -> TaskViewOut:
    try:
        view = await perform(session, _client_source(request, settings), _viewer(request, user), action)
    except Refusal as refusal:
        raise refusal.http() from None
    return TaskViewOut.of(view)


IdempotencyKey = Annotated[str | None, Header(max_length=100, description="the same key twice acts once")]


def _update_id(user: User, key: str | None, task_key: str, action: str) -> str | None:
    return f"{user.username}:{action}:{task_key}:{key}" if key else None


@router.post("/tasks/{task_key:path}/claim", response_model=TaskViewOut, responses=REFUSALS)
async def claim_task(task_key: str, request: Request, session: SessionDep, user: CurrentUser, settings: SettingsDep,
                     body: TaskActionIn | None = None, idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """Take the task: 409 with who holds it when someone else claimed it first."""
    body = body or TaskActionIn()
    return await _act(request, session, user, settings, TaskAction(
        "claim", task_key, body.expected_version, body.comment,
        update_id=_update_id(user, idempotency_key, task_key, "claim")))


@router.post("/tasks/{task_key:path}/release", response_model=TaskViewOut, responses=REFUSALS)
async def release_task(task_key: str, request: Request, session: SessionDep, user: CurrentUser,
                       settings: SettingsDep, body: TaskActionIn | None = None,
                       idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """Give a claimed task back to its candidates."""
    body = body or TaskActionIn()
    return await _act(request, session, user, settings, TaskAction(
        "release", task_key, body.expected_version, body.comment,
        update_id=_update_id(user, idempotency_key, task_key, "release")))


@router.post("/tasks/{task_key:path}/resolve", response_model=TaskViewOut, responses=REFUSALS)
async def resolve_task(task_key: str, request: Request, session: SessionDep, user: CurrentUser,
                       settings: SettingsDep, body: TaskActionIn | None = None,
                       idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """A delegate hands the task back to its owner."""
    body = body or TaskActionIn()
    return await _act(request, session, user, settings, TaskAction(
        "resolve", task_key, body.expected_version, body.comment,
        update_id=_update_id(user, idempotency_key, task_key, "resolve")))


@router.post("/tasks/{task_key:path}/delegate", response_model=TaskViewOut, responses=REFUSALS)
async def delegate_task(task_key: str, body: DelegateIn, request: Request, session: SessionDep, user: CurrentUser,
                        settings: SettingsDep, idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """Let someone else decide for you; you stay the owner, both of you are recorded."""
    return await _act(request, session, user, settings, TaskAction(
        "delegate", task_key, body.expected_version, body.comment, to_user=body.to_user,
        update_id=_update_id(user, idempotency_key, task_key, "delegate")))


@router.post("/tasks/{task_key:path}/forward", response_model=TaskViewOut, responses=REFUSALS)
async def forward_task(task_key: str, body: ForwardIn, request: Request, session: SessionDep, user: CurrentUser,
                       settings: SettingsDep, idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """Hand the task to other groups or people instead of you (it goes back to ready)."""
    if not body.to_groups and not body.to_users:
        raise invalid("to_groups", "forward to at least one group or user", value=None)
    return await _act(request, session, user, settings, TaskAction(
        "forward", task_key, body.expected_version, body.comment, to_groups=tuple(body.to_groups),
        to_users=tuple(body.to_users), update_id=_update_id(user, idempotency_key, task_key, "forward")))


@router.post("/tasks/{task_key:path}/decision", response_model=TaskViewOut, responses=REFUSALS)
async def decide_task(task_key: str, body: DecisionIn, request: Request, session: SessionDep, user: CurrentUser,
                      settings: SettingsDep, idempotency_key: IdempotencyKey = None) -> TaskViewOut:
    """Approve, reject or request changes (the last two need a comment)."""
    return await _act(request, session, user, settings, TaskAction(
        "decide", task_key, body.expected_version, body.comment, outcome=body.outcome,
        update_id=_update_id(user, idempotency_key, task_key, "decide")))


@router.post("/approvals/{request_key:path}/resubmit", response_model=ResubmitOut, responses=REFUSALS)
async def resubmit_request(request_key: str, body: ResubmitIn, request: Request, session: SessionDep,
                           user: CurrentUser, settings: SettingsDep) -> ResubmitOut:
    """The requester sends the request back into its chain after changes were requested."""
    facts = body.facts.model_dump(exclude_none=True) if body.facts else None
    try:
        result = await resubmit(session, _client_source(request, settings), _viewer(request, user), request_key,
                                body.comment, facts)
    except Refusal as refusal:
        raise refusal.http() from None
    return ResubmitOut(request_key=request_key, status=result)


# ------------------------------------------------------------------------------------------- saved views


@router.get("/inbox-views", response_model=list[SavedViewOut])
def list_saved_views(request: Request, session: SessionDep, user: CurrentUser) -> list[SavedViewOut]:
    """Your saved views and those shared with a group you belong to."""
    viewer = _viewer(request, user)
    answer = [saved_view_out(r, viewer) for r in inbox.saved_views(session, viewer)]
    session.commit()
    return answer


def create_saved_view(session: Session, viewer: inbox.Viewer, body: SavedViewIn) -> SavedView:
    """Shared by the JSON route and the inbox page's "save this view" form (the caller commits)."""
    if body.shared_with_group and body.shared_with_group not in viewer.groups:
        raise invalid("shared_with_group", "share only with a group you belong to", value=body.shared_with_group)
    filters = inbox.InboxFilters.from_dict(body.filters.model_dump(exclude_none=True))
    stored: dict[str, Any] = {"view": body.view, **filters.as_dict()}
    if body.sort:
        stored["sort"] = body.sort
    row = SavedView(name=body.name.strip(), owner=viewer.username, shared_with_group=body.shared_with_group or None,
                    filters=stored)
    session.add(row)
    session.flush()
    audit(session, actor=viewer.username, action="inbox_view.create", entity_kind="saved_view", entity_id=row.id,
          data={"name": row.name, "shared_with_group": row.shared_with_group})
    return row


def delete_saved_view(session: Session, viewer: inbox.Viewer, view_id: int) -> SavedView:
    row = inbox.saved_view(session, viewer, view_id)
    if row is None and viewer.is_admin:
        row = session.get(SavedView, view_id)
    if row is None:
        raise HTTPException(404, detail=f"saved view {view_id} not found")
    if row.owner != viewer.username and not viewer.is_admin:
        raise HTTPException(403, detail=f"only {row.owner} (or an admin) may delete the view {row.name!r}")
    session.delete(row)
    audit(session, actor=viewer.username, action="inbox_view.delete", entity_kind="saved_view", entity_id=view_id,
          data={"name": row.name, "owner": row.owner})
    return row


@router.post("/inbox-views", response_model=SavedViewOut, status_code=status.HTTP_201_CREATED)
def post_saved_view(body: SavedViewIn, request: Request, session: SessionDep, user: CurrentUser) -> SavedViewOut:
    """Save a view (view, filters, sort), optionally shared with one of your groups."""
    viewer = _viewer(request, user)
    row = create_saved_view(session, viewer, body)
    out = saved_view_out(row, viewer)
    session.commit()
    return out


@router.delete("/inbox-views/{view_id}", response_model=SavedViewOut,
               responses={403: REFUSALS[403], 404: REFUSALS[404]})
def remove_saved_view(view_id: int, request: Request, session: SessionDep, user: CurrentUser) -> SavedViewOut:
    """Delete one of your saved views (admins may delete any)."""
    viewer = _viewer(request, user)
    row = delete_saved_view(session, viewer, view_id)
    out = saved_view_out(row, viewer)
    session.commit()
    return out
