"""What the policy designer pages and API stand on: an overview of kinds and versions, full validation with every
problem's place, a readable diff between two versions, a simulation of a draft against recent real requests, and
JSON import/export of a policy body (reference/bpm-anchors.md b5.3 and c.3: draft, simulate, four eyes, publish).

The store itself (drafts, publishing, retiring, the version in force) is models/approval_policies.py; evaluation
and the rules' own validation are workflows/approval_rules.py, the very code a running ApprovalChain uses, so a
simulation routes a request exactly as a chain started under that body would.

Functions here read and flush, never commit. Their results are pydantic models, so the JSON API returns them as
they are and the pages lay them out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlmodel import Session

from models.approval_policies import PolicyError, body_from_json, body_to_json, known_groups, policy_in_force
from models.approvals import ApprovalPolicy, ApprovalRequest, PolicyStatus
from models.common import utcnow
from models.users import User
from workflows.approval_rules import (
    NUMERIC_FACTS,
    TEXT_FACTS,
    Condition,
    DocumentKind,
    HitPolicy,
    PolicyBody,
    PolicyProblem,
    PolicyRule,
    RequestFacts,
    Routing,
    StepSpec,
    evaluate,
    validate,
)

# ------------------------------------------------------------------------------------------- words

KIND_LABELS: dict[str, str] = {
    DocumentKind.quote: "Quotes",
    DocumentKind.credit_hold: "Sales order credit holds",
    DocumentKind.purchase_order: "Purchase orders",
    DocumentKind.vendor_bill_exception: "Vendor bill exceptions",
    DocumentKind.customer_return: "Customer returns",
    DocumentKind.stock_adjustment: "Stock adjustments",
}

FACT_LABELS: dict[str, str] = {
    "amount": "amount",
    "discount_percent": "discount %",
    "margin_percent": "margin %",
    "customer_segment": "customer segment",
    "category": "category",
    "branch": "branch",
    "requester": "requester",
}
FACTS: tuple[str, ...] = tuple(FACT_LABELS)  # the order columns and pickers show them in

OP_LABELS: dict[str, str] = {
    "<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠", "in": "is one of", "not_in": "is none of",
}

HIT_POLICY_LABELS: dict[str, str] = {
    HitPolicy.first: "First match",
    HitPolicy.rule_order: "Rule order (sequential chain)",
    HitPolicy.collect: "Collect (parallel approvers)",
}

MAX_SLA_HOURS = 24 * 366
DEFAULT_SIMULATION_LIMIT = 200
MAX_SIMULATION_LIMIT = 2000
EXPORT_FORMAT = "tradeflow.approval-policy"
EXPORT_FORMAT_VERSION = 1


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def is_kind(kind: str) -> bool:
    return kind in DocumentKind._value2member_map_


def today() -> date:
    return utcnow().date()


def _number_text(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if number == number.to_integral_value():
        return f"{number.quantize(Decimal(1)):,}"
    return f"{number.normalize():,f}"


def value_text(cond: Condition) -> str:
    if isinstance(cond.value, tuple):
        return ", ".join(cond.value)
    if cond.fact in NUMERIC_FACTS:
        return _number_text(cond.value)
    return str(cond.value)


def condition_text(cond: Condition) -> str:
    """`discount % > 10`, `category is one of cables, lighting`, `branch = NBG`."""
    return f"{FACT_LABELS.get(cond.fact, cond.fact)} {OP_LABELS.get(cond.op, cond.op)} {value_text(cond)}"


def conditions_text(conds: Iterable[Condition]) -> str:
    parts = [condition_text(c) for c in conds]
    return " and ".join(parts) if parts else "always (no conditions)"


def approvers_text(step: StepSpec) -> str:
    names = [*step.candidate_groups, *(f"user {u}" for u in step.candidate_users)]
    return ", ".join(names) if names else "nobody"


def _hours(h: int | None) -> str:
    if h is None:
        return "never"
    if h % 24 == 0 and h >= 48:
        return f"{h // 24} days"
    return "1 hour" if h == 1 else f"{h} h"


def sla_text(step: StepSpec) -> str:
    sla = step.sla
    parts = [f"remind after {_hours(sla.remind_after_hours)}"] if sla.remind_after_hours else []
    if sla.escalate_after_hours:
        parts.append(f"escalate after {_hours(sla.escalate_after_hours)} to {', '.join(sla.escalate_to_groups)}")
    if sla.expire_after_hours:
        parts.append(f"expire after {_hours(sla.expire_after_hours)}: {sla.expire_action.value}")
    return "; ".join(parts) if parts else "no deadlines"


def hit_policy_explained(body: PolicyBody) -> str:
    """The hit policy in words, for the people who read the decision table."""
    if body.hit_policy == HitPolicy.first:
        return ("First match: the rules are checked from the top, and the first rule whose conditions all hold routes "
                "the request to its one step. Rules may not overlap, so the order never hides a rule. A request "
                "that no rule matches needs no approval.")
    if body.hit_policy == HitPolicy.rule_order:
        return ("Rule order: every rule whose conditions all hold adds its step, and the steps run one after another "
                "in the order of the table (a sequential chain); each must approve before the next opens. A request "
                "that no rule matches needs no approval.")
    quorum = (f"{body.quorum} approval{'s' if body.quorum != 1 else ''} decide (fewer when fewer steps matched)"
              if body.quorum else "every step must approve")
    return ("Collect: every rule whose conditions all hold adds its step, and all those steps open at the same time "
            f"(parallel approvers); {quorum}. A request that no rule matches needs no approval.")


# ------------------------------------------------------------------------------------------- problems


def problem_dicts(problems: Iterable[PolicyProblem]) -> list[dict[str, str]]:
    return [{"where": p.where, "reason": p.reason} for p in problems]


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # pydantic names the member of a union it tried ("decimal", "tuple[str, ...]"): not a place in the body
        if i > 0 and loc[i - 1] == "value" and "conditions" in loc:
            break
        out += f".{part}" if out else str(part)
    return out or "body"


def parse_body(data: Any) -> PolicyBody:
    """A policy body from its JSON form, or PolicyError listing each malformed part with where it is."""
    if not isinstance(data, Mapping):
        raise PolicyError("a policy body must be a JSON object", [PolicyProblem("body", "expected a JSON object")])
    try:
        return body_from_json(dict(data))
    except ValidationError as exc:
        problems: dict[str, PolicyProblem] = {}
        for err in exc.errors():
            where = _where(tuple(err["loc"]))
            reason = err["msg"]
            if where.endswith(".value") and err["type"] in ("decimal_type", "string_type", "tuple_type"):
                reason = "must be a number, a text, or a list of texts"
            problems.setdefault(where, PolicyProblem(where, reason))
        raise PolicyError("the policy body is malformed", list(problems.values())) from None


def _known_users(session: Session, names: set[str]) -> set[str]:
    if not names:
        return set()
    return set(session.scalars(select(User.username).where(User.username.in_(sorted(names)), User.active)).all())


def check(session: Session, body: PolicyBody, *, kind: str | None = None) -> list[PolicyProblem]:
    """Every problem of a policy body: the rules' own validation (overlaps under FIRST, unknown groups, empty
    chains, SLA order ...) and what only the store knows or a designer would trip over (unknown users, a text
    fact compared with a number, a list given to `=`, the wrong document kind)."""
    problems = list(validate(body, known_groups(session)))
    if kind is not None and body.kind.value != kind:
        problems.insert(0, PolicyProblem("kind", f"this is a {body.kind.value} policy, not a {kind} policy"))
    wanted_users = {u for r in body.rules for u in r.step.candidate_users}
    known = _known_users(session, wanted_users)
    for i, rule in enumerate(body.rules):
        at = f"rules[{i}]"
        if not rule.step.name.strip():
            problems.append(PolicyProblem(f"{at}.step.name", "the step needs a name approvers will recognise"))
        for u in rule.step.candidate_users:
            if u not in known:
                problems.append(PolicyProblem(f"{at}.step", f"unknown or inactive user {u!r}"))
        for j, cond in enumerate(rule.conditions):
            cat = f"{at}.conditions[{j}]"
            if cond.fact in TEXT_FACTS and cond.op in ("==", "!=") and not isinstance(cond.value, str):
                hint = "; use 'is one of' for a list" if isinstance(cond.value, tuple) else ""
                problems.append(PolicyProblem(f"{cat}.value", f"{FACT_LABELS[cond.fact]} is compared with one text{hint}"))
            if cond.fact in TEXT_FACTS and isinstance(cond.value, str) and not cond.value.strip():
                problems.append(PolicyProblem(f"{cat}.value", "the value is empty"))
        for name in ("remind_after_hours", "escalate_after_hours", "expire_after_hours"):
            hours = getattr(rule.step.sla, name)
            if hours is not None and hours > MAX_SLA_HOURS:
                problems.append(PolicyProblem(f"{at}.step.sla.{name}", f"at most {MAX_SLA_HOURS} hours (a year)"))
    return problems


def check_or_raise(session: Session, body: PolicyBody, *, kind: str | None = None) -> None:
    problems = check(session, body, kind=kind)
    if problems:
        raise PolicyError("the policy has problems", problems)


# ------------------------------------------------------------------------------------------- overview


class VersionSummary(BaseModel):
    id: int
    kind: str
    version: int
    status: PolicyStatus
    hit_policy: str
    rule_count: int
    effective_from: date | None
    note: str
    authored_by: str
    created_at: datetime
    published_by: str | None
    published_at: datetime | None
    retired_at: datetime | None
    body_sha256: str
    in_force: bool  # the version a request starting today would pin
    scheduled: bool  # published, but its effective date is still ahead
    superseded: bool  # published and effective, but a newer published version is in force


class KindOverview(BaseModel):
    kind: str
    label: str
    in_force_version: int | None
    draft_count: int
    versions: list[VersionSummary]  # newest first


def summarize(policy: ApprovalPolicy, in_force: int | None, as_of: date) -> VersionSummary:
    body = policy.body or {}
    published = policy.status == PolicyStatus.published
    scheduled = published and policy.effective_from is not None and policy.effective_from > as_of
    return VersionSummary(
        id=policy.id, kind=policy.kind, version=policy.version, status=policy.status,
        hit_policy=str(body.get("hit_policy", "")), rule_count=len(body.get("rules") or []),
        effective_from=policy.effective_from, note=policy.note, authored_by=policy.authored_by,
        created_at=policy.created_at, published_by=policy.published_by, published_at=policy.published_at,
        retired_at=policy.retired_at, body_sha256=policy.body_sha256, in_force=policy.version == in_force,
        scheduled=scheduled, superseded=published and not scheduled and policy.version != in_force,
    )


def in_force_version(session: Session, kind: str, as_of: date | None = None) -> int | None:
    policy = policy_in_force(session, kind, as_of or today())
    return policy.version if policy else None


def list_kinds(session: Session, as_of: date | None = None) -> list[KindOverview]:
    """Every document kind (those without a policy too), its versions newest first, and which is in force."""
    as_of = as_of or today()
    rows = session.scalars(select(ApprovalPolicy).order_by(ApprovalPolicy.kind, ApprovalPolicy.version.desc())).all()
    by_kind: dict[str, list[ApprovalPolicy]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    out = []
    for kind in DocumentKind:
        in_force = in_force_version(session, kind.value, as_of)
        versions = [summarize(p, in_force, as_of) for p in by_kind.get(kind.value, [])]
        out.append(KindOverview(kind=kind.value, label=kind_label(kind.value), in_force_version=in_force,
                                draft_count=sum(v.status == PolicyStatus.draft for v in versions), versions=versions))
    return out


def get_version(session: Session, kind: str, version: int) -> ApprovalPolicy | None:
    return session.scalars(
        select(ApprovalPolicy).where(ApprovalPolicy.kind == kind, ApprovalPolicy.version == version)
    ).first()


def comparison_base(session: Session, policy: ApprovalPolicy, as_of: date | None = None) -> ApprovalPolicy | None:
    """What a version is compared with by default: the version in force today, or else the newest published one
    (a scheduled version); never the version itself."""
    current = policy_in_force(session, policy.kind, as_of or today())
    if current is not None and current.id != policy.id:
        return current
    return session.scalars(
        select(ApprovalPolicy)
        .where(ApprovalPolicy.kind == policy.kind, ApprovalPolicy.status == PolicyStatus.published,
               ApprovalPolicy.id != policy.id)
        .order_by(ApprovalPolicy.version.desc())
        .limit(1)
    ).first()


def delete_draft(session: Session, policy: ApprovalPolicy) -> None:
    """Discard a draft nobody published (published and retired versions are history and stay)."""
    if policy.status != PolicyStatus.draft:
        raise PolicyError(f"version {policy.version} is {policy.status.value}; only drafts can be discarded")
    session.delete(policy)
    session.flush()


# ------------------------------------------------------------------------------------------- diff


ChangeAspect = Literal["policy", "rule", "conditions", "step", "approvers", "sla", "delegation", "position", "rule_id"]


class Change(BaseModel):
    aspect: ChangeAspect
    text: str
    before: str | None = None
    after: str | None = None


class RuleDiff(BaseModel):
    rule_id: str
    status: Literal["added", "removed", "changed", "unchanged"]
    position_before: int | None  # 1-based, as the table shows it
    position_after: int | None
    conditions: str  # the rule's conditions in words (after the change; before for a removed rule)
    step: str
    changes: list[Change]


class PolicyDiff(BaseModel):
    kind: str
    from_version: int | None
    to_version: int | None
    identical: bool
    hit_policy: Change | None
    quorum: Change | None
    rules: list[RuleDiff]
    summary: list[str]


def _norm_value(cond: Condition) -> Any:
    if isinstance(cond.value, tuple):
        return tuple(sorted(cond.value))
    if cond.fact in NUMERIC_FACTS:
        try:
            return Decimal(str(cond.value)).normalize()
        except (InvalidOperation, ValueError):
            return str(cond.value)
    return cond.value


def _cond_key(cond: Condition) -> tuple:
    return (cond.fact, cond.op, _norm_value(cond))


def _list_change(aspect: ChangeAspect, noun: str, before: tuple[str, ...], after: tuple[str, ...]) -> list[Change]:
    out = []
    added = [x for x in after if x not in before]
    removed = [x for x in before if x not in after]
    if added:
        out.append(Change(aspect=aspect, text=f"adds {noun} {', '.join(added)}", after=", ".join(added)))
    if removed:
        out.append(Change(aspect=aspect, text=f"removes {noun} {', '.join(removed)}", before=", ".join(removed)))
    return out


def _condition_changes(before: tuple[Condition, ...], after: tuple[Condition, ...]) -> list[Change]:
    old = Counter(_cond_key(c) for c in before)
    new = Counter(_cond_key(c) for c in after)
    removed = [c for c in before if (old - new)[_cond_key(c)] > 0]
    added = [c for c in after if (new - old)[_cond_key(c)] > 0]
    out: list[Change] = []
    # The same fact and operator with a new value reads best as one change: "discount % > 10 → > 15".
    for a in list(added):
        match = next((r for r in removed if (r.fact, r.op) == (a.fact, a.op)), None)
        if match is None:
            match = next((r for r in removed if r.fact == a.fact), None)
        if match is not None:
            removed.remove(match)
            added.remove(a)
            out.append(Change(aspect="conditions", text=f"changes {condition_text(match)} → {condition_text(a)}",
                              before=condition_text(match), after=condition_text(a)))
    out.extend(Change(aspect="conditions", text=f"adds condition {condition_text(c)}", after=condition_text(c))
               for c in added)
    out.extend(Change(aspect="conditions", text=f"removes condition {condition_text(c)}", before=condition_text(c))
               for c in removed)
    return out


def _step_changes(a: StepSpec, b: StepSpec) -> list[Change]:
    out: list[Change] = []
    if a.name != b.name:
        out.append(Change(aspect="step", text=f"renames the step {a.name!r} → {b.name!r}", before=a.name, after=b.name))
    out += _list_change("approvers", "candidate group", a.candidate_groups, b.candidate_groups)
    out += _list_change("approvers", "candidate user", a.candidate_users, b.candidate_users)
    sa, sb = a.sla, b.sla
    for field, noun in (("remind_after_hours", "reminder"), ("escalate_after_hours", "escalation"),
                        ("expire_after_hours", "expiry")):
        x, y = getattr(sa, field), getattr(sb, field)
        if x != y:
            out.append(Change(aspect="sla", text=f"{noun} after {_hours(x)} → {_hours(y)}",
                              before=None if x is None else str(x), after=None if y is None else str(y)))
    out += _list_change("sla", "escalation group", sa.escalate_to_groups, sb.escalate_to_groups)
    if sa.expire_action != sb.expire_action:
        out.append(Change(aspect="sla", text=f"on expiry: {sa.expire_action.value} → {sb.expire_action.value}",
                          before=sa.expire_action.value, after=sb.expire_action.value))
    if a.delegable != b.delegable:
        out.append(Change(aspect="delegation", text="may now be delegated" if b.delegable else "may no longer be delegated",
                          before=str(a.delegable).lower(), after=str(b.delegable).lower()))
    return out


def _step_summary(step: StepSpec) -> str:
    return f"{step.name} ({approvers_text(step)})"


def _when(rule: PolicyRule) -> str:
    return f"when {conditions_text(rule.conditions)}" if rule.conditions else "always"


def _same_content(a: PolicyRule, b: PolicyRule) -> bool:
    return Counter(map(_cond_key, a.conditions)) == Counter(map(_cond_key, b.conditions)) and a.step == b.step


def diff(published_body: PolicyBody | None, draft_body: PolicyBody, *, from_version: int | None = None,
         to_version: int | None = None) -> PolicyDiff:
    """What changes from `published_body` (None: there is nothing yet) to `draft_body`, rule by rule (matched by
    rule id; a rule renamed without other changes is reported as a rename), in words."""
    before = published_body.rules if published_body else ()
    after = draft_body.rules
    old_pos = {r.rule_id: i for i, r in enumerate(before)}
    new_pos = {r.rule_id: i for i, r in enumerate(after)}
    order_matters = draft_body.hit_policy != HitPolicy.collect
    rules: list[RuleDiff] = []
    renamed_from: dict[str, PolicyRule] = {}
    gone = [r for r in before if r.rule_id not in new_pos]
    for r in after:
        if r.rule_id in old_pos:
            continue
        twin = next((g for g in gone if _same_content(g, r)), None)
        if twin is not None:
            gone.remove(twin)
            renamed_from[r.rule_id] = twin

    # Positions compared among the rules both versions share, so inserting one rule does not "move" the rest.
    shared_before = [r.rule_id for r in before if r.rule_id in new_pos]
    shared_after = [r.rule_id for r in after if r.rule_id in old_pos]

    for i, rule in enumerate(after):
        if rule.rule_id in old_pos:
            old = before[old_pos[rule.rule_id]]
            changes = _condition_changes(old.conditions, rule.conditions) + _step_changes(old.step, rule.step)
            if order_matters and shared_before.index(rule.rule_id) != shared_after.index(rule.rule_id):
                changes.insert(0, Change(aspect="position", text=f"moves from position {old_pos[rule.rule_id] + 1} to {i + 1}",
                                         before=str(old_pos[rule.rule_id] + 1), after=str(i + 1)))
            rules.append(RuleDiff(rule_id=rule.rule_id, status="changed" if changes else "unchanged",
                                  position_before=old_pos[rule.rule_id] + 1, position_after=i + 1,
                                  conditions=conditions_text(rule.conditions), step=_step_summary(rule.step),
                                  changes=changes))
        elif rule.rule_id in renamed_from:
            old = renamed_from[rule.rule_id]
            rules.append(RuleDiff(rule_id=rule.rule_id, status="changed", position_before=old_pos[old.rule_id] + 1,
                                  position_after=i + 1, conditions=conditions_text(rule.conditions),
                                  step=_step_summary(rule.step),
                                  changes=[Change(aspect="rule_id", text=f"rule {old.rule_id!r} renamed to {rule.rule_id!r}",
                                                  before=old.rule_id, after=rule.rule_id)]))
        else:
            rules.append(RuleDiff(rule_id=rule.rule_id, status="added", position_before=None, position_after=i + 1,
                                  conditions=conditions_text(rule.conditions), step=_step_summary(rule.step),
                                  changes=[Change(aspect="rule", text=f"new rule: {_when(rule)} → {_step_summary(rule.step)}")]))
    for rule in gone:
        rules.append(RuleDiff(rule_id=rule.rule_id, status="removed", position_before=old_pos[rule.rule_id] + 1,
                              position_after=None, conditions=conditions_text(rule.conditions),
                              step=_step_summary(rule.step),
                              changes=[Change(aspect="rule", text=f"rule removed: {_when(rule)} → {_step_summary(rule.step)}")]))

    hit = None
    if published_body is not None and published_body.hit_policy != draft_body.hit_policy:
        hit = Change(aspect="policy", text=f"hit policy {HIT_POLICY_LABELS[published_body.hit_policy]} → "
                                         f"{HIT_POLICY_LABELS[draft_body.hit_policy]}",
                     before=published_body.hit_policy.value, after=draft_body.hit_policy.value)
    quorum = None
    old_q = published_body.quorum if published_body else None
    if published_body is not None and old_q != draft_body.quorum:
        words = lambda q: "every step" if q is None else str(q)  # noqa: E731
        quorum = Change(aspect="policy", text=f"quorum {words(old_q)} → {words(draft_body.quorum)}",
                        before=None if old_q is None else str(old_q),
                        after=None if draft_body.quorum is None else str(draft_body.quorum))

    counts = Counter(r.status for r in rules)
    summary = []
    if published_body is None:
        summary.append(f"no published version to compare with: all {len(after)} rules are new")
    else:
        if hit:
            summary.append(hit.text)
        if quorum:
            summary.append(quorum.text)
        for status, verb in (("added", "added"), ("removed", "removed"), ("changed", "changed")):
            if counts[status]:
                summary.append(f"{counts[status]} rule{'s' if counts[status] != 1 else ''} {verb}")
        if not summary:
            summary.append("no changes")
    identical = published_body is not None and hit is None and quorum is None and all(
        r.status == "unchanged" for r in rules)
    return PolicyDiff(kind=draft_body.kind.value, from_version=from_version, to_version=to_version,
                      identical=identical, hit_policy=hit, quorum=quorum, rules=rules, summary=summary)


# ------------------------------------------------------------------------------------------- simulation


class StepRoute(BaseModel):
    name: str
    groups: list[str]
    users: list[str]
    rule_ids: list[str]
    sla: str
    delegable: bool


class RouteView(BaseModel):
    policy_version: int | None  # None: the draft, or no published version existed
    needs_approval: bool
    parallel: bool
    quorum: int
    steps: list[StepRoute]
    text: str


ChangeKind = Literal["unchanged", "terms_changed", "rerouted", "now_needs_approval", "no_longer_needs_approval"]
ROUTING_CHANGES: frozenset[str] = frozenset({"rerouted", "now_needs_approval", "no_longer_needs_approval"})
CHANGE_LABELS: dict[str, str] = {
    "unchanged": "Same routing",
    "terms_changed": "Same approvers, other terms",
    "rerouted": "Routed differently",
    "now_needs_approval": "Now needs approval",
    "no_longer_needs_approval": "No longer needs approval",
}


class SimulatedRequest(BaseModel):
    request_key: str
    title: str
    document_ref: str
    requester: str
    status: str
    created_at: datetime
    facts: dict[str, str]
    then: RouteView
    now: RouteView
    change: ChangeKind
    differs: bool  # would now route to other people (or need / not need approval)
    changes: list[str]


class SkippedRequest(BaseModel):
    request_key: str
    reason: str


class ApproverLoad(BaseModel):
    approver: str  # a group name, or "user:<name>"
    then: int
    now: int
    delta: int


class SimulationTotals(BaseModel):
    requests: int
    differs: int
    unchanged: int
    terms_changed: int
    rerouted: int
    now_needs_approval: int
    no_longer_needs_approval: int
    skipped: int
    needing_approval_then: int
    needing_approval_now: int
    steps_then: int
    steps_now: int


Baseline = Literal["pinned", "in_force"]


class Simulation(BaseModel):
    kind: str
    draft_version: int | None
    baseline: Baseline
    baseline_text: str
    limit: int
    in_force_version: int | None
    baseline_versions: list[int]
    totals: SimulationTotals
    load: list[ApproverLoad]
    requests: list[SimulatedRequest]
    skipped: list[SkippedRequest]


def _decimal_fact(facts: Mapping[str, Any], name: str, default: Any) -> Decimal:
    raw = facts.get(name)
    if raw is None or raw == "":
        raw = default
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{FACT_LABELS[name]} {raw!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{FACT_LABELS[name]} {raw!r} is not a number")
    return value


def facts_of(request: ApprovalRequest) -> RequestFacts:
    """The facts a request was routed on (stored as text); the row's own columns fill what the facts lack."""
    f = request.facts or {}
    defaults = RequestFacts()
    return RequestFacts(
        amount=_decimal_fact(f, "amount", request.amount if request.amount is not None else defaults.amount),
        discount_percent=_decimal_fact(f, "discount_percent", defaults.discount_percent),
        margin_percent=_decimal_fact(f, "margin_percent", defaults.margin_percent),
        customer_segment=str(f.get("customer_segment") or ""),
        category=str(f.get("category") or ""),
        branch=str(f.get("branch") or request.branch or ""),
        requester=str(f.get("requester") or request.requester or ""),
    )


def _facts_dict(facts: RequestFacts) -> dict[str, str]:
    return {name: str(getattr(facts, name)) for name in FACTS if str(getattr(facts, name))}


def route_view(routing: Routing, version: int | None) -> RouteView:
    steps = [StepRoute(name=s.step.name, groups=list(s.step.candidate_groups), users=list(s.step.candidate_users),
                       rule_ids=list(s.rule_ids), sla=sla_text(s.step), delegable=s.step.delegable)
             for s in routing.steps]
    if not steps:
        text = "no approval needed"
    else:
        joiner = " + " if routing.parallel else " → "
        text = joiner.join(f"{s.name} ({approvers_text_of(s)})" for s in steps)
        if routing.parallel:
            text += f"; {routing.quorum} of {len(steps)} decide"
    return RouteView(policy_version=version, needs_approval=bool(steps), parallel=routing.parallel,
                     quorum=routing.quorum, steps=steps, text=text)


def approvers_text_of(step: StepRoute) -> str:
    return ", ".join([*step.groups, *(f"user {u}" for u in step.users)]) or "nobody"


def _who(step: StepRoute) -> tuple:
    return (step.name, tuple(step.groups), tuple(step.users))


def compare_routes(then: RouteView, now: RouteView) -> tuple[ChangeKind, list[str]]:
    """How a request's routing changes, as a kind and readable lines."""
    if not then.needs_approval and not now.needs_approval:
        return "unchanged", []
    if not then.needs_approval:
        return "now_needs_approval", [f"now needs approval: {now.text}"]
    if not now.needs_approval:
        return "no_longer_needs_approval", [f"would no longer need approval (was: {then.text})"]
    lines: list[str] = []
    before, after = Counter(map(_who, then.steps)), Counter(map(_who, now.steps))
    added, dropped = after - before, before - after
    for s in now.steps:
        if added[_who(s)] > 0:
            added[_who(s)] -= 1
            lines.append(f"adds step {s.name} ({approvers_text_of(s)}) by rule {', '.join(s.rule_ids)}")
    for s in then.steps:
        if dropped[_who(s)] > 0:
            dropped[_who(s)] -= 1
            lines.append(f"drops step {s.name} ({approvers_text_of(s)})")
    if not lines and [_who(s) for s in then.steps] != [_who(s) for s in now.steps]:
        lines.append("same approvers in a different order")
    if then.parallel != now.parallel:
        lines.append("steps now run in parallel" if now.parallel else "steps now run one after another")
    if now.parallel and then.parallel and then.quorum != now.quorum:
        lines.append(f"quorum {then.quorum} → {now.quorum}")
    if lines:
        return "rerouted", lines
    terms = []
    for a, b in zip(then.steps, now.steps, strict=True):
        if a.sla != b.sla:
            terms.append(f"{b.name}: {a.sla} → {b.sla}")
        if a.delegable != b.delegable:
            terms.append(f"{b.name}: {'may now' if b.delegable else 'may no longer'} be delegated")
        if a.rule_ids != b.rule_ids:
            terms.append(f"{b.name}: routed by rule {', '.join(b.rule_ids)} (was {', '.join(a.rule_ids)})")
    return ("terms_changed", terms) if terms else ("unchanged", [])


def _load_keys(view: RouteView) -> list[str]:
    return [k for s in view.steps for k in (*s.groups, *(f"user:{u}" for u in s.users))]


def recent_requests(session: Session, kind: str, limit: int) -> list[ApprovalRequest]:
    return list(session.scalars(
        select(ApprovalRequest)
        .where(ApprovalRequest.kind == kind)
        .order_by(ApprovalRequest.created_at.desc(), ApprovalRequest.id.desc())
        .limit(limit)
    ))


def simulate(session: Session, draft_body: PolicyBody, limit: int = DEFAULT_SIMULATION_LIMIT, *,
             baseline: Baseline = "pinned", draft_version: int | None = None,
             as_of: date | None = None) -> Simulation:
    """Replay the most recent `limit` real requests of the draft's kind under the draft and under a baseline, and
    report per request the routing then and now, which would now route differently, totals and approver load.

    baseline="pinned": each request's own pinned version (ApprovalRequest.policy_version), or when it pinned none,
    the version in force on the day it was created: "what happened" against "what would happen".
    baseline="in_force": the version in force today for every request: "today's rules" against "the draft"."""
    if baseline not in ("pinned", "in_force"):
        raise PolicyError(f"unknown baseline {baseline!r}: use 'pinned' or 'in_force'")
    limit = max(1, min(int(limit), MAX_SIMULATION_LIMIT))
    as_of = as_of or today()
    kind = draft_body.kind.value
    current = policy_in_force(session, kind, as_of)
    versions: dict[int, PolicyBody] = {}
    on_day: dict[date, int | None] = {}

    def body_of(version: int) -> PolicyBody | None:
        if version not in versions:
            row = get_version(session, kind, version)
            if row is None:
                return None
            versions[version] = body_from_json(row.body)
        return versions[version]

    def baseline_version(request: ApprovalRequest) -> int | None:
        if baseline == "in_force":
            return current.version if current else None
        if request.policy_version is not None and body_of(request.policy_version) is not None:
            return request.policy_version
        day = request.created_at.date() if request.created_at else as_of
        if day not in on_day:
            found = policy_in_force(session, kind, day)
            on_day[day] = found.version if found else None
        return on_day[day]

    no_rules = PolicyBody(draft_body.kind, HitPolicy.rule_order, ())
    results: list[SimulatedRequest] = []
    skipped: list[SkippedRequest] = []
    used_versions: set[int] = set()
    load_then: Counter[str] = Counter()
    load_now: Counter[str] = Counter()
    for request in recent_requests(session, kind, limit):
        try:
            facts = facts_of(request)
        except ValueError as exc:
            skipped.append(SkippedRequest(request_key=request.request_key, reason=str(exc)))
            continue
        version = baseline_version(request)
        base_body = body_of(version) if version is not None else None
        if version is not None:
            used_versions.add(version)
        then = route_view(evaluate(base_body or no_rules, facts), version)
        now = route_view(evaluate(draft_body, facts), draft_version)
        change, lines = compare_routes(then, now)
        load_then.update(_load_keys(then))
        load_now.update(_load_keys(now))
        results.append(SimulatedRequest(
            request_key=request.request_key, title=request.title, document_ref=request.document_ref,
            requester=request.requester, status=str(getattr(request.status, "value", request.status)),
            created_at=request.created_at, facts=_facts_dict(facts), then=then, now=now, change=change,
            differs=change in ROUTING_CHANGES, changes=lines,
        ))
    counts = Counter(r.change for r in results)
    totals = SimulationTotals(
        requests=len(results), differs=sum(r.differs for r in results), unchanged=counts["unchanged"],
        terms_changed=counts["terms_changed"], rerouted=counts["rerouted"],
        now_needs_approval=counts["now_needs_approval"], no_longer_needs_approval=counts["no_longer_needs_approval"],
        skipped=len(skipped), needing_approval_then=sum(r.then.needs_approval for r in results),
        needing_approval_now=sum(r.now.needs_approval for r in results),
        steps_then=sum(len(r.then.steps) for r in results), steps_now=sum(len(r.now.steps) for r in results),
    )
    load = sorted(
        (ApproverLoad(approver=k, then=load_then[k], now=load_now[k], delta=load_now[k] - load_then[k])
         for k in set(load_then) | set(load_now)),
        key=lambda x: (-abs(x.delta), -x.now, x.approver),
    )
    if baseline == "in_force":
        baseline_text = (f"version {current.version}, in force today" if current
                         else "no version is in force today (every request needed no approval)")
    else:
        baseline_text = "the version each request pinned when it started (or the one in force on its day)"
    return Simulation(kind=kind, draft_version=draft_version, baseline=baseline, baseline_text=baseline_text,
                      limit=limit, in_force_version=current.version if current else None,
                      baseline_versions=sorted(used_versions), totals=totals, load=load, requests=results,
                      skipped=skipped)


# ------------------------------------------------------------------------------------------- import / export


def export_policy(policy: ApprovalPolicy) -> dict[str, Any]:
    """A self-describing JSON document of one version; `import_body` reads it back (or a bare body)."""
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "kind": policy.kind,
        "version": policy.version,
        "status": str(getattr(policy.status, "value", policy.status)),
        "effective_from": policy.effective_from.isoformat() if policy.effective_from else None,
        "note": policy.note,
        "body_sha256": policy.body_sha256,
        "body": policy.body,
    }


def export_body(body: PolicyBody) -> dict[str, Any]:
    return body_to_json(body)


def import_body(data: Any) -> PolicyBody:
    """A body from an export document or a bare body (a JSON text or an already parsed object); PolicyError with
    where/reason for anything malformed."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise PolicyError("not JSON", [PolicyProblem("body", f"not valid JSON: {exc.msg} at line {exc.lineno}, "
                                                                 f"column {exc.colno}")]) from None
    if isinstance(data, Mapping) and "format" in data:
        if data.get("format") != EXPORT_FORMAT:
            raise PolicyError("unknown format", [PolicyProblem("format", f"expected {EXPORT_FORMAT!r}")])
        if data.get("format_version") != EXPORT_FORMAT_VERSION:
            raise PolicyError("unknown format version", [
                PolicyProblem("format_version", f"this Tradeflow reads format version {EXPORT_FORMAT_VERSION}")])
        body = data.get("body")
        try:
            return parse_body(body)
        except PolicyError as exc:
            raise PolicyError(str(exc), [PolicyProblem(f"body.{p.where}" if p.where != "body" else "body", p.reason)
                                         for p in exc.problems]) from None
    return parse_body(data)
