"""The policy store: drafts, four-eyes publishing, retiring, and the version in force on a date.

Bodies are stored as JSON (the shape of workflows.approval_rules.PolicyBody); `body_sha256` over canonical JSON
lets a running chain prove which exact rules it pinned.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from functools import lru_cache

from pydantic import TypeAdapter
from sqlalchemy import func, or_, select
from sqlmodel import Session

from models.approvals import ApprovalPolicy, PolicyStatus
from models.common import utcnow
from models.users import Group
from workflows.approval_rules import PolicyBody, PolicyProblem, validate


class PolicyError(ValueError):
    """A policy operation refused; `problems` lists what is wrong and where."""

    def __init__(self, message: str, problems: list[PolicyProblem] | None = None):
        super().__init__(message)
        self.problems = problems or []


@lru_cache(maxsize=1)
def _adapter() -> TypeAdapter:
    return TypeAdapter(PolicyBody)


def body_to_json(body: PolicyBody) -> dict:
    return _adapter().dump_python(body, mode="json")


def body_from_json(data: dict) -> PolicyBody:
    return _adapter().validate_python(data)


def body_sha256(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def known_groups(session: Session) -> frozenset[str]:
    return frozenset(session.scalars(select(Group.name)).all())


def policy_in_force(session: Session, kind: str, as_of: date) -> ApprovalPolicy | None:
    """The newest published version effective on `as_of` (no effective date means from publication on)."""
    return session.scalars(
        select(ApprovalPolicy)
        .where(
            ApprovalPolicy.kind == kind,
            ApprovalPolicy.status == PolicyStatus.published,
            or_(ApprovalPolicy.effective_from.is_(None), ApprovalPolicy.effective_from <= as_of),
        )
        .order_by(ApprovalPolicy.version.desc())
        .limit(1)
    ).first()


def check_body(session: Session, body: PolicyBody) -> None:
    problems = validate(body, known_groups(session))
    if problems:
        raise PolicyError("the policy has problems", problems)


def create_draft(session: Session, body: PolicyBody, *, author: str, note: str = "",
                 effective_from: date | None = None) -> ApprovalPolicy:
    check_body(session, body)
    kind = body.kind.value
    latest = session.scalar(select(func.max(ApprovalPolicy.version)).where(ApprovalPolicy.kind == kind)) or 0
    data = body_to_json(body)
    policy = ApprovalPolicy(kind=kind, version=latest + 1, status=PolicyStatus.draft, body=data,
                            body_sha256=body_sha256(data), note=note, authored_by=author,
                            effective_from=effective_from)
    session.add(policy)
    session.flush()
    return policy


def update_draft(session: Session, policy: ApprovalPolicy, body: PolicyBody, *, editor: str, note: str | None = None,
                 effective_from: date | None = None) -> ApprovalPolicy:
    if policy.status != PolicyStatus.draft:
        raise PolicyError(f"version {policy.version} is {policy.status.value}; only drafts can be edited")
    if body.kind.value != policy.kind:
        raise PolicyError("a draft cannot change its document kind")
    check_body(session, body)
    data = body_to_json(body)
    policy.body, policy.body_sha256 = data, body_sha256(data)
    policy.authored_by = editor  # whoever wrote the rules last may not publish them
    if note is not None:
        policy.note = note
    policy.effective_from = effective_from
    session.add(policy)
    session.flush()
    return policy


def publish(session: Session, policy: ApprovalPolicy, *, publisher: str) -> ApprovalPolicy:
    """Four eyes on the rules themselves: the author of the draft may not publish it."""
    if policy.status != PolicyStatus.draft:
        raise PolicyError(f"version {policy.version} is already {policy.status.value}")
    if publisher == policy.authored_by:
        raise PolicyError("the author of a policy version cannot publish it; a second person must")
    check_body(session, body_from_json(policy.body))
    policy.status = PolicyStatus.published
    policy.published_by = publisher
    policy.published_at = utcnow()
    if policy.effective_from is None:
        # "No date" means "from publication on": written down, so a process started earlier (or a simulation
        # as of an earlier day) never sees rules that did not exist yet.
        policy.effective_from = policy.published_at.date()
    session.add(policy)
    session.flush()
    return policy


def retire(session: Session, policy: ApprovalPolicy) -> ApprovalPolicy:
    if policy.status != PolicyStatus.published:
        raise PolicyError(f"only published versions can be retired; version {policy.version} is {policy.status.value}")
    policy.status = PolicyStatus.retired
    policy.retired_at = utcnow()
    session.add(policy)
    session.flush()
    return policy
