"""Payloads that cross the Temporal boundary: frozen dataclasses of stdlib types (Decimal for money and
quantities), carried by the pydantic data converter. Workflow-id helpers live here too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from workflows.approval_rules import PolicyBody, RequestFacts


@dataclass(frozen=True)
class ReserveStockInput:
    demand_key: str
    product_id: int
    warehouse_id: int
    quantity: Decimal


@dataclass(frozen=True)
class ReserveStockResult:
    demand_key: str
    requested: Decimal
    reserved: Decimal
    newly_reserved: Decimal
    shortfall: Decimal


@dataclass(frozen=True)
class ReleaseReservationInput:
    demand_key: str
    quantity: Decimal | None = None  # None releases all of it


@dataclass(frozen=True)
class ReleaseReservationResult:
    demand_key: str
    released: Decimal


@dataclass(frozen=True)
class PostStockMoveInput:
    key: str
    product_id: int
    quantity: Decimal
    source_location_id: int
    dest_location_id: int
    unit_cost: Decimal | None = None
    demand_key: str | None = None
    move_date: date | None = None
    customer_id: int | None = None
    supplier_id: int | None = None


@dataclass(frozen=True)
class PostStockMoveResult:
    move_id: int
    key: str
    kind: str
    value: Decimal
    journal_entry_id: int | None
    already_posted: bool


def q2c_id(quote_number: str) -> str:
    return f"q2c:{quote_number}"


def p2p_id(order_number: str) -> str:
    return f"p2p:{order_number}"


def rma_id(rma_number: str) -> str:
    return f"rma:{rma_number}"


# ------------------------------------------------------------------------------------------- approvals
# The policy body types live in workflows/approval_rules.py (pure data + evaluation).

APPROVAL_CHAIN_WORKFLOW = "ApprovalChain"


def approval_id(request_key: str) -> str:
    """Workflow id of a standalone approval chain, e.g. approval:quote:Q-000123."""
    return f"approval:{request_key}"


class ApprovalOutcome(StrEnum):
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"


@dataclass(frozen=True)
class ApprovalChainInput:
    request_key: str  # business key, e.g. "quote:Q-000123"
    kind: str  # DocumentKind value
    document_ref: str  # e.g. "Q-000123"
    title: str
    requester: str
    facts: RequestFacts
    details: dict  # what the approver sees: lines, prices, exposure ... (display only)
    branch: str = ""
    priority: int = 50
    # How long the requester may take to resubmit after "request changes" before the request is cancelled.
    resubmit_within_hours: int = 14 * 24


@dataclass(frozen=True)
class LoadPolicyInput:
    kind: str
    as_of: date


@dataclass(frozen=True)
class PinnedPolicy:
    kind: str
    version: int
    sha256: str
    body: PolicyBody


@dataclass(frozen=True)
class Actor:
    """Who acts, as the web session established it (never taken from a form)."""

    username: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.groups


@dataclass(frozen=True)
class TaskCommand:
    """Claim, release, resolve (a delegate hands back) — and the base of the other task updates."""

    task_key: str
    actor: Actor
    expected_version: int | None = None  # optimistic concurrency: refuse if the task moved on
    comment: str = ""


@dataclass(frozen=True)
class DecideCommand:
    task_key: str
    actor: Actor
    outcome: str  # TaskOutcome value: approved, rejected, changes_requested
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class DelegateCommand:
    task_key: str
    actor: Actor
    to_user: str
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class ForwardCommand:
    task_key: str
    actor: Actor
    to_groups: tuple[str, ...] = ()
    to_users: tuple[str, ...] = ()
    comment: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class ResubmitCommand:
    actor: Actor
    comment: str = ""
    facts: RequestFacts | None = None  # changed facts, when the requester edited the request


@dataclass(frozen=True)
class TaskView:
    """A task as it stands right after an update: the inbox row already says the same."""

    task_key: str
    status: str
    outcome: str | None
    assignee: str | None
    owner: str | None
    delegation_state: str
    candidate_groups: tuple[str, ...]
    candidate_users: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class DecisionRecord:
    task_key: str
    step_name: str
    rule_ids: tuple[str, ...]
    outcome: str  # approved, rejected, changes_requested, expired, skipped, cancelled
    actor: str | None
    acting_for: str | None
    comment: str
    at: datetime


@dataclass(frozen=True)
class ApprovalResult:
    request_key: str
    outcome: str  # ApprovalOutcome value
    policy_version: int | None
    decisions: tuple[DecisionRecord, ...]


@dataclass(frozen=True)
class ChainStatus:
    """The Query answer for the task page and operators: where the chain stands."""

    request_key: str
    status: str  # RequestStatus value
    policy_version: int | None
    current_step: int
    open_tasks: tuple[TaskView, ...]
    decisions: tuple[DecisionRecord, ...]


# Activity payloads of the approval chain


@dataclass(frozen=True)
class RegisterRequestInput:
    request_key: str
    workflow_id: str
    kind: str
    document_ref: str
    title: str
    requester: str
    branch: str
    amount: str  # Decimal as text: the row keeps the exact value
    facts: dict
    details: dict
    policy_version: int | None


@dataclass(frozen=True)
class TaskSnapshot:
    """The whole state of one task as the workflow holds it; the row takes it if `version` is newer."""

    task_key: str
    request_key: str
    workflow_id: str
    step_index: int
    round: int
    step_name: str
    kind: str
    title: str
    document_ref: str
    requester: str
    branch: str
    amount: str
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
    escalation_level: int
    completed_at: datetime | None
    completed_by: str | None
    acting_for: str | None
    comment: str
    policy_kind: str
    policy_version: int | None
    rule_ids: tuple[str, ...]
    candidate_groups: tuple[str, ...]
    candidate_users: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class SaveTaskInput:
    task: TaskSnapshot
    action: str  # what happened, for the audit trail: created, claimed, approved, escalated ...
    actor: str  # a username, or "system" for timers
    acting_for: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ResolveCandidatesInput:
    candidate_users: tuple[str, ...]
    candidate_groups: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class ResolvedCandidates:
    """Explicit candidate users plus the substitutes of anyone out of office who would receive the task."""

    candidate_users: tuple[str, ...]
    substitutes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotifyInput:
    message_key: str  # idempotency: one message per key and recipient
    subject: str
    body: str
    task_key: str | None = None
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class FinishRequestInput:
    request_key: str
    status: str  # RequestStatus value
    actor: str = "system"
    reason: str = ""
    policy_version: int | None = None
    at: datetime | None = None
    facts: dict = field(default_factory=dict)
