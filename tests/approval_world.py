"""People and policies for approval tests: role groups, a few users per role, and policy builders."""

from __future__ import annotations

from decimal import Decimal as D

from sqlmodel import Session

from models.approval_policies import create_draft, publish
from models.setup import ensure_role_groups
from models.users import User, UserGroup
from workflows.approval_rules import (
    Condition,
    DocumentKind,
    ExpiryAction,
    HitPolicy,
    PolicyBody,
    PolicyRule,
    StepSla,
    StepSpec,
)

# username -> groups
PEOPLE = {
    "sam.sales": ("sales",),
    "sue.sales": ("sales", "sales-manager"),  # a manager who also sells: segregation of duties applies
    "mia.manager": ("sales-manager",),
    "max.manager": ("sales-manager",),
    "carl.cfo": ("cfo",),
    "fiona.finance": ("finance", "cfo"),
    "ada.admin": ("admin",),
    "paula.designer": ("process-designer",),
    "peter.designer": ("process-designer",),
}


def add_people(session: Session) -> None:
    groups = ensure_role_groups(session)
    for username, roles in PEOPLE.items():
        user = User(username=username, full_name=username.replace(".", " ").title(),
                    email=f"{username}@tradeflow.test", password_hash="!")
        session.add(user)
        session.flush()
        session.add_all(UserGroup(user_id=user.id, group_id=groups[r].id) for r in roles)
    session.flush()


def step(name: str, *groups: str, escalate_to: tuple[str, ...] = ("cfo",),
         expire_action: ExpiryAction = ExpiryAction.reject,
         delegable: bool = True) -> StepSpec:
    return StepSpec(name, tuple(groups),
                    sla=StepSla(remind_after_hours=24, escalate_after_hours=48, escalate_to_groups=escalate_to,
                                expire_after_hours=120, expire_action=expire_action),
                    delegable=delegable)


def two_step_quote_policy(manager_group: str = "sales-manager") -> PolicyBody:
    """Discounts above 10 % need a sales manager; above 20 % the CFO as well (a RULE_ORDER chain)."""
    return PolicyBody(
        DocumentKind.quote,
        HitPolicy.rule_order,
        (
            PolicyRule("discount>10", (Condition("discount_percent", ">", D("10")),),
                       step("Sales manager approval", manager_group)),
            PolicyRule("discount>20", (Condition("discount_percent", ">", D("20")),),
                       step("CFO approval", "cfo", escalate_to=("admin",))),
        ),
    )


def publish_policy(session: Session, body: PolicyBody, author: str = "paula.designer",
                   publisher: str = "peter.designer"):
    draft = create_draft(session, body, author=author)
    return publish(session, draft, publisher=publisher)
