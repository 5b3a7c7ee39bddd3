"""The demo distributor's first approval policies, one per document kind, published with four eyes.

Franconia Electrical Supply (models/demo.py) sells cable, protection and lighting to contractors on thin margins,
so quotes are watched on discount and margin; big purchase orders and credit holds reach the CFO; returns need
quality and the sales side together; stock write-offs go through the warehouse, then finance. Thresholds are
the kind a regional wholesaler with 3 branches starts with; the designer pages exist so they can be tuned.

`ensure_demo_policies(session)` is idempotent: a kind that already has any policy version is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from models.approval_policies import create_draft, publish
from models.approvals import ApprovalPolicy
from models.records import AuditEvent
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

# Four eyes on the rules themselves: one designer writes them, another person publishes them. The demo has one
# process designer; the admin (who holds every role) is the second pair of eyes unless another designer is named.
DEMO_POLICY_AUTHOR = "dana.designer"
DEMO_POLICY_PUBLISHER = "admin"


def _sla(remind: int | None, escalate: int | None, to: tuple[str, ...], expire: int | None,
         on_expiry: ExpiryAction = ExpiryAction.reject) -> StepSla:
    return StepSla(remind_after_hours=remind, escalate_after_hours=escalate, escalate_to_groups=to if escalate else (),
                   expire_after_hours=expire, expire_action=on_expiry)


def _rule(rule_id: str, conditions: tuple[tuple[str, str, object], ...], name: str, groups: tuple[str, ...],
          sla: StepSla, delegable: bool = True) -> PolicyRule:
    return PolicyRule(rule_id, tuple(Condition(f, op, v) for f, op, v in conditions),
                      StepSpec(name, groups, sla=sla, delegable=delegable))


# A working week for routine approvals; an order on credit hold waits for nobody longer than a day.
ROUTINE = _sla(24, 48, ("cfo",), 120)
CFO = _sla(24, None, (), 120)


def quote_policy() -> PolicyBody:
    """A sequential chain: at most one sales-manager step and at most one CFO step, whichever rules matched.
    The low-margin and large-quote rules exclude the discount rules that already bring in the same group."""
    return PolicyBody(DocumentKind.quote, HitPolicy.rule_order, (
        _rule("Q-DISC-10", (("discount_percent", ">", D("10")),),
              "Sales manager: discount above 10 %", ("sales-manager",), ROUTINE),
        _rule("Q-MARGIN-12", (("discount_percent", "<=", D("10")), ("margin_percent", "<", D("12"))),
              "Sales manager: margin below 12 %", ("sales-manager",), ROUTINE),
        _rule("Q-DISC-20", (("discount_percent", ">", D("20")),),
              "CFO: discount above 20 %", ("cfo",), CFO, delegable=False),
        _rule("Q-AMOUNT-50K", (("discount_percent", "<=", D("20")), ("amount", ">", D("50000"))),
              "CFO: quote above 50,000", ("cfo",), CFO, delegable=False),
    ))


def credit_hold_policy() -> PolicyBody:
    """Every order held for credit goes to a credit controller (escalating to the CFO within the day, because
    the customer is waiting); large orders need the CFO as well."""
    return PolicyBody(DocumentKind.credit_hold, HitPolicy.rule_order, (
        _rule("CH-CONTROLLER", (), "Credit controller: release the hold", ("credit-controller",),
              _sla(4, 8, ("cfo",), 48)),
        _rule("CH-LARGE-50K", (("amount", ">", D("50000")),), "CFO: large order on hold", ("cfo",),
              _sla(8, None, (), 48), delegable=False),
    ))


def purchase_order_policy() -> PolicyBody:
    """Amount tiers, first match: up to 5,000 a buyer orders alone; to 25,000 the purchasing manager approves;
    above that the CFO."""
    return PolicyBody(DocumentKind.purchase_order, HitPolicy.first, (
        _rule("PO-TIER-1", (("amount", ">", D("5000")), ("amount", "<=", D("25000"))),
              "Purchasing manager approval", ("purchasing-manager",), ROUTINE),
        _rule("PO-TIER-2", (("amount", ">", D("25000")),), "CFO approval", ("cfo",), CFO, delegable=False),
    ))


def vendor_bill_exception_policy() -> PolicyBody:
    """Bills that fail the 3-way match, by the amount of the difference: small differences are accepted if
    finance does not object within three days; larger ones need finance; very large ones the CFO."""
    return PolicyBody(DocumentKind.vendor_bill_exception, HitPolicy.first, (
        _rule("VB-MINOR", (("amount", "<=", D("250")),), "Finance: minor price difference", ("finance",),
              _sla(24, None, (), 72, ExpiryAction.approve)),
        _rule("VB-MAJOR", (("amount", ">", D("250")), ("amount", "<=", D("10000"))),
              "Finance: bill exception", ("finance",), ROUTINE),
        _rule("VB-CRITICAL", (("amount", ">", D("10000")),), "CFO: large bill exception", ("cfo",), CFO,
              delegable=False),
    ))


def customer_return_policy() -> PolicyBody:
    """Quality inspects and the sales manager judges the customer side, in parallel; returns above 2,500 add
    finance, and any two of the three decide."""
    return PolicyBody(DocumentKind.customer_return, HitPolicy.collect, (
        _rule("RET-QUALITY", (), "Quality inspection", ("quality",), _sla(24, None, (), 168)),
        _rule("RET-SALES", (), "Sales manager: customer goodwill", ("sales-manager",), ROUTINE),
        _rule("RET-FINANCE-2500", (("amount", ">", D("2500")),), "Finance: credit note check", ("finance",),
              ROUTINE),
    ), quorum=2)


def stock_adjustment_policy() -> PolicyBody:
    """Write-offs and count differences by value: above 100 the warehouse lead confirms, above 1,000 finance
    approves after them."""
    return PolicyBody(DocumentKind.stock_adjustment, HitPolicy.rule_order, (
        _rule("SA-WAREHOUSE-100", (("amount", ">", D("100")),), "Warehouse lead: confirm the count",
              ("warehouse",), _sla(24, 48, ("finance",), 120)),
        _rule("SA-FINANCE-1000", (("amount", ">", D("1000")),), "Finance: approve the write-off", ("finance",),
              ROUTINE),
    ))


DEMO_POLICIES: dict[DocumentKind, tuple[Callable[[], PolicyBody], str]] = {
    DocumentKind.quote: (quote_policy, "Discount and margin limits, large quotes to the CFO"),
    DocumentKind.credit_hold: (credit_hold_policy, "Credit controller releases holds; large orders add the CFO"),
    DocumentKind.purchase_order: (purchase_order_policy, "Amount tiers: purchasing manager to 25,000, then CFO"),
    DocumentKind.vendor_bill_exception: (vendor_bill_exception_policy, "3-way match differences by amount"),
    DocumentKind.customer_return: (customer_return_policy, "Quality, sales and (large) finance; 2 decide"),
    DocumentKind.stock_adjustment: (stock_adjustment_policy, "Warehouse lead, then finance above 1,000"),
}
assert set(DEMO_POLICIES) == set(DocumentKind), "every document kind needs a demo policy"


@dataclass(frozen=True)
class DemoPolicyResult:
    published: list[str]  # "quote v1", ...
    skipped: list[str]  # kinds that already had a policy


def ensure_demo_policies(session: Session, *, author: str = DEMO_POLICY_AUTHOR,
                         publisher: str = DEMO_POLICY_PUBLISHER) -> DemoPolicyResult:
    """Publish the demo policy of every kind that has no policy version yet (author and publisher differ, so
    four eyes hold); kinds with any version are left as they are. Flushes, never commits."""
    have = set(session.scalars(select(ApprovalPolicy.kind).distinct()).all())
    published, skipped = [], []
    for kind, (build, note) in DEMO_POLICIES.items():
        if kind.value in have:
            skipped.append(kind.value)
            continue
        draft = create_draft(session, build(), author=author, note=note)
        session.add(AuditEvent(actor=author, action="policy_create", entity_kind="approval_policy",
                               entity_id=f"{kind.value}:v{draft.version}", data={"note": note, "demo": True}))
        publish(session, draft, publisher=publisher)
        session.add(AuditEvent(actor=publisher, action="policy_publish", entity_kind="approval_policy",
                               entity_id=f"{kind.value}:v{draft.version}",
                               data={"body_sha256": draft.body_sha256, "demo": True}))
        published.append(f"{kind.value} v{draft.version}")
    session.flush()
    return DemoPolicyResult(published=published, skipped=skipped)
