"""Side effects of approval chains: pin the policy, keep the inbox rows (human_task) in step with the
workflow, notify people through the outbox, and write the audit trail. Every activity is one transaction and
idempotent: tasks by task key and version, messages by message key, the request by request key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.approval_policies import body_from_json, policy_in_force
from models.approvals import (
    ApprovalRequest,
    HumanTask,
    RequestStatus,
    Substitution,
    replace_candidates,
)
from models.common import utcnow
from models.db import transaction
from models.outbox import OutgoingMessage, queue_messages
from models.records import AuditEvent
from models.users import Group, User, UserGroup
from workflows.contracts import (
    FinishRequestInput,
    LoadPolicyInput,
    NotifyInput,
    PinnedPolicy,
    RegisterRequestInput,
    ResolveCandidatesInput,
    ResolvedCandidates,
    SaveTaskInput,
)


class ApprovalActivities:
    def __init__(self, engine: Engine, public_url: str = "http://127.0.0.1:8000") -> None:
        self.engine = engine
        self.public_url = public_url.rstrip("/")

    @activity.defn
    def load_policy(self, request: LoadPolicyInput) -> PinnedPolicy:
        with transaction(self.engine) as session:
            policy = policy_in_force(session, request.kind, request.as_of)
            if policy is None:
                raise ApplicationError(
                    f"no published approval policy for {request.kind} is in force on {request.as_of}",
                    type="NoPolicyInForce",
                    non_retryable=True,
                )
            return PinnedPolicy(policy.kind, policy.version, policy.body_sha256, body_from_json(policy.body))

    @activity.defn
    def register_request(self, request: RegisterRequestInput) -> None:
        with transaction(self.engine) as session:
            row = session.scalars(
                select(ApprovalRequest).where(ApprovalRequest.request_key == request.request_key)
            ).first()
            if row is None:
                row = ApprovalRequest(request_key=request.request_key, workflow_id=request.workflow_id,
                                      kind=request.kind, document_ref=request.document_ref, title=request.title,
                                      requester=request.requester)
                session.add(AuditEvent(actor=request.requester, action="approval.requested",
                                       entity_kind="approval_request", entity_id=request.request_key,
                                       data={"policy_version": request.policy_version}))
            row.branch, row.amount = request.branch, request.amount
            row.facts, row.details, row.policy_version = request.facts, request.details, request.policy_version
            row.status = RequestStatus.pending
            session.add(row)

    @activity.defn
    def resolve_candidates(self, request: ResolveCandidatesInput) -> ResolvedCandidates:
        """Out of office: a task for someone away also goes to their substitute, followed transitively (a
        substitute who is away hands on to theirs) with a bound and cycle check."""
        with transaction(self.engine) as session:
            away = {
                s.username: s.substitute
                for s in session.scalars(
                    select(Substitution).where(Substitution.starts_at <= request.at, Substitution.ends_at > request.at)
                )
            }
            if not away:
                return ResolvedCandidates(tuple(request.candidate_users))
            members = set(request.candidate_users)
            if request.candidate_groups:
                members |= set(
                    session.scalars(
                        select(User.username)
                        .join(UserGroup, UserGroup.user_id == User.id)
                        .join(Group, Group.id == UserGroup.group_id)
                        .where(Group.name.in_(request.candidate_groups), User.active.is_(True))
                    )
                )
            substitutes: list[str] = []
            covers: dict[str, str] = {}
            for person in sorted(members):
                seen = {person}
                current = person
                while current in away and len(seen) < 10:
                    current = away[current]
                    if current in seen:
                        break
                    seen.add(current)
                    if current not in away and current not in substitutes and current not in request.candidate_users:
                        substitutes.append(current)
                        covers.setdefault(current, person)
            return ResolvedCandidates(tuple(request.candidate_users) + tuple(substitutes), tuple(substitutes),
                                      tuple(sorted(covers.items())))

    @activity.defn
    def save_task(self, request: SaveTaskInput) -> None:
        t = request.task
        with transaction(self.engine) as session:
            row = session.scalars(select(HumanTask).where(HumanTask.task_key == t.task_key)).first()
            if row is not None and row.version >= t.version:
                return  # a retry, or an older snapshot arriving after a newer one: the row already says more
            if row is None:
                row = HumanTask(task_key=t.task_key)
            for name in (
                "request_key", "workflow_id", "step_index", "round", "step_name", "kind", "title", "document_ref",
                "requester", "branch", "amount", "status", "outcome", "assignee", "owner", "delegation_state",
                "priority", "created_at", "follow_up_at", "escalate_at", "due_at", "escalation_level",
                "completed_at", "completed_by", "acting_for", "comment", "policy_kind", "policy_version", "version",
            ):
                setattr(row, name, getattr(t, name))
            row.rule_ids = list(t.rule_ids)
            row.candidate_groups = list(t.candidate_groups)
            row.candidate_users = list(t.candidate_users)
            session.add(row)
            session.flush()
            # Names and the copied status, from the row just written: the inbox's open views read only these.
            replace_candidates(session, row)
            session.add(AuditEvent(actor=request.actor, acting_for=request.acting_for, action=f"task.{request.action}",
                                   entity_kind="human_task", entity_id=t.task_key, reason=request.reason[:500],
                                   data={"version": t.version, "status": t.status, "outcome": t.outcome,
                                         "rule_ids": list(t.rule_ids), "policy_version": t.policy_version,
                                         "assignee": t.assignee, "candidate_groups": list(t.candidate_groups)}))

    @activity.defn
    def notify(self, request: NotifyInput) -> int:
        """Queue one e-mail per recipient in the outbox; returns how many were new."""
        with transaction(self.engine) as session:
            users = set(request.users)
            if request.groups:
                users |= set(
                    session.scalars(
                        select(User.username)
                        .join(UserGroup, UserGroup.user_id == User.id)
                        .join(Group, Group.id == UserGroup.group_id)
                        .where(Group.name.in_(request.groups), User.active.is_(True))
                    )
                )
            if not users:
                return 0
            people = session.execute(
                select(User.username, User.email).where(User.username.in_(sorted(users)), User.active.is_(True))
            ).all()
            link = f"{self.public_url}/inbox/{request.task_key}" if request.task_key else ""
            body = request.body + (f"\n\nOpen the task: {link}\n" if link else "\n")
            # One statement for every recipient; a key already queued (a retry) is skipped.
            return queue_messages(session, [OutgoingMessage(f"{request.message_key}:{username}", email,
                                                            request.subject, body, link)
                                            for username, email in people])

    @activity.defn
    def finish_request(self, request: FinishRequestInput) -> None:
        with transaction(self.engine) as session:
            row = session.scalars(
                select(ApprovalRequest).where(ApprovalRequest.request_key == request.request_key)
            ).first()
            if row is None:
                return
            if row.status == request.status:
                return
            row.status = RequestStatus(request.status)
            if request.facts:
                row.facts = request.facts
            if request.status in (RequestStatus.approved, RequestStatus.rejected, RequestStatus.cancelled):
                row.decided_at = request.at or utcnow()
            session.add(row)
            session.add(AuditEvent(actor=request.actor, action=f"approval.{request.status}",
                                   entity_kind="approval_request", entity_id=request.request_key,
                                   reason=request.reason[:500], data={"policy_version": row.policy_version}))
