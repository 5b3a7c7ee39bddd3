"""Approval tables: versioned policies, approval requests, human tasks (the inbox read model), candidates,
substitutions (out of office), saved inbox views, and the notification outbox."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint, delete, insert, text
from sqlmodel import Field, Session, SQLModel

from models.common import MONEY, utcnow


class PolicyStatus(StrEnum):
    draft = "draft"
    published = "published"
    retired = "retired"


class ApprovalPolicy(SQLModel, table=True):
    """One version of the decision table for a document kind. Published versions never change; a process
    pins the version in force when it starts (workflows/approval_rules.py holds the body's shape)."""

    __tablename__ = "approval_policy"
    __table_args__ = (UniqueConstraint("kind", "version", name="approval_policy_version_unique"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)
    version: int
    status: PolicyStatus = Field(default=PolicyStatus.draft, index=True)
    effective_from: date | None = None
    body: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    body_sha256: str = Field(default="", max_length=64)
    note: str = Field(default="", max_length=500)
    authored_by: str = Field(max_length=60)
    created_at: datetime = Field(default_factory=utcnow)
    published_by: str | None = Field(default=None, max_length=60)
    published_at: datetime | None = None
    retired_at: datetime | None = None


class RequestStatus(StrEnum):
    pending = "pending"
    changes_requested = "changes_requested"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


class ApprovalRequest(SQLModel, table=True):
    """One approval chain: what is asked, by whom, under which pinned policy version, and how it ended."""

    __tablename__ = "approval_request"
    id: int | None = Field(default=None, primary_key=True)
    request_key: str = Field(max_length=120, unique=True)  # e.g. "quote:Q-000123"
    workflow_id: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=40, index=True)
    document_ref: str = Field(max_length=60, index=True)
    title: str = Field(max_length=200)
    requester: str = Field(max_length=60, index=True)
    branch: str = Field(default="", max_length=20)
    amount: Decimal = Field(default=Decimal(0), **MONEY)
    facts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    policy_version: int | None = None
    status: RequestStatus = Field(default=RequestStatus.pending, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


class TaskStatus(StrEnum):
    ready = "ready"  # open, unclaimed
    reserved = "reserved"  # claimed by the assignee
    completed = "completed"  # decided: see outcome
    skipped = "skipped"  # no longer needed (a parallel quorum was reached without it)
    expired = "expired"
    cancelled = "cancelled"  # the process was cancelled


OPEN_TASK_STATUSES = (TaskStatus.ready, TaskStatus.reserved)
# The same as SQL, for the partial index of open tasks (SQLite and PostgreSQL spell it alike).
_OPEN_TASKS_SQL = text("status IN ('ready', 'reserved')")


class TaskOutcome(StrEnum):
    approved = "approved"
    rejected = "rejected"
    changes_requested = "changes_requested"


class DelegationState(StrEnum):
    none = "none"
    pending = "pending"  # the delegate holds it; the owner stays accountable
    resolved = "resolved"  # the delegate handed it back


class HumanTask(SQLModel, table=True):
    """The inbox read model of one human task. The ApprovalChain workflow owns the state; activities write
    this row idempotently (task_key; a change applies only if its version is newer)."""

    __tablename__ = "human_task"
    # Each inbox view reads its own index (models/inbox.py; plans and figures: bench/inbox.py): "my tasks" by
    # assignee, "delegated by me" by owner, "completed by me" by completer in completion order, and the open views
    # by the partial index of open tasks (a few percent of the table, in deadline order), never the closed history.
    __table_args__ = (
        Index("ix_human_task_status_due", "status", "due_at"),
        Index("ix_human_task_assignee_status", "assignee", "status"),
        Index("ix_human_task_owner_status", "owner", "status"),
        Index("ix_human_task_completed_by", "completed_by", "completed_at", "id"),
        Index("ix_human_task_open", "status", "due_at", "id", sqlite_where=_OPEN_TASKS_SQL,
              postgresql_where=_OPEN_TASKS_SQL),
    )
    id: int | None = Field(default=None, primary_key=True)
    task_key: str = Field(max_length=160, unique=True)
    request_key: str = Field(max_length=120, index=True)
    workflow_id: str = Field(max_length=200)
    step_index: int = 0
    round: int = 0  # resubmissions after "request changes" open a new round of the same step
    step_name: str = Field(max_length=120)
    kind: str = Field(max_length=40, index=True)
    title: str = Field(max_length=200)
    document_ref: str = Field(max_length=60)
    requester: str = Field(max_length=60)
    branch: str = Field(default="", max_length=20, index=True)
    amount: Decimal = Field(default=Decimal(0), **MONEY)
    status: TaskStatus = Field(default=TaskStatus.ready)
    outcome: TaskOutcome | None = None
    assignee: str | None = Field(default=None, max_length=60)
    owner: str | None = Field(default=None, max_length=60)
    delegation_state: DelegationState = DelegationState.none
    priority: int = Field(default=50, ge=0, le=100)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    follow_up_at: datetime | None = None  # the reminder time
    escalate_at: datetime | None = None
    due_at: datetime | None = None  # expiry
    escalation_level: int = 0
    completed_at: datetime | None = None
    completed_by: str | None = Field(default=None, max_length=60)
    acting_for: str | None = Field(default=None, max_length=60)
    comment: str = Field(default="", max_length=2000)
    policy_kind: str = Field(default="", max_length=40)
    policy_version: int | None = None
    rule_ids: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidate_groups: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    candidate_users: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    version: int = 1


class HumanTaskCandidate(SQLModel, table=True):
    """Who may pick a task up, one row per group or user, so "tasks of my groups" is an indexed join.

    `status` is a copy of the task's status, so "my open tasks" is one range of the index below (the viewer's
    open candidate rows) instead of a candidate probe for every open task in the table. Only
    `replace_candidates` writes these rows, always from the task row itself, so the copy cannot drift."""

    __tablename__ = "human_task_candidate"
    __table_args__ = (Index("ix_task_candidate_lookup", "kind", "name", "status", "task_id"),)
    task_id: int = Field(foreign_key="human_task.id", primary_key=True)
    kind: str = Field(max_length=5, primary_key=True)  # "group" or "user"
    name: str = Field(max_length=60, primary_key=True)
    status: TaskStatus


def candidate_names(task: HumanTask) -> set[tuple[str, str]]:
    """Who sees a task: its candidate groups and users, its assignee and its owner (a delegating owner stays
    accountable and keeps it in view)."""
    names = {("group", g) for g in task.candidate_groups or ()} | {("user", u) for u in task.candidate_users or ()}
    names |= {("user", n) for n in (task.assignee, task.owner) if n}
    return names


def replace_candidates(session: Session, task: HumanTask) -> None:
    """Rewrite the candidate rows of a flushed task from the task as it now stands (names and status); flushes.

    Every change of a task goes through here (activities/approvals.py save_task), in the transaction that writes
    the task, so the copied status follows the task on claim, release, delegation, decision, expiry and cancel."""
    if task.id is None:
        session.flush()
    session.execute(delete(HumanTaskCandidate).where(HumanTaskCandidate.task_id == task.id))
    rows = [{"task_id": task.id, "kind": k, "name": n, "status": task.status} for k, n in sorted(candidate_names(task))]
    if rows:
        session.execute(insert(HumanTaskCandidate), rows)


class Substitution(SQLModel, table=True):
    """Out of office: from `starts_at` to `ends_at`, new tasks for `username` also go to `substitute`."""

    __tablename__ = "substitution"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=60, index=True)
    substitute: str = Field(max_length=60)
    starts_at: datetime
    ends_at: datetime
    created_by: str = Field(max_length=60)
    created_at: datetime = Field(default_factory=utcnow)


class SavedView(SQLModel, table=True):
    __tablename__ = "saved_view"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
    owner: str = Field(max_length=60, index=True)
    shared_with_group: str | None = Field(default=None, max_length=40, index=True)
    filters: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


class OutboxMessage(SQLModel, table=True):
    """An e-mail to send. Written in the same transaction as what caused it (idempotent on `message_key`);
    a sender delivers pending rows over SMTP and marks them sent."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_status_created", "status", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    message_key: str = Field(max_length=200, unique=True)
    recipient: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    body: str
    link: str = Field(default="", max_length=500)
    status: OutboxStatus = Field(default=OutboxStatus.pending)
    attempts: int = 0
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
