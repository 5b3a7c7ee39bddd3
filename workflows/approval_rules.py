"""Approval policies as data, and their evaluation: pure and deterministic, so a workflow can run it on the
policy version pinned in its history, and the designer can validate and simulate drafts with the same code.

A policy is a decision table over a request's facts with a DMN hit policy (reference/bpm-anchors.md b4):
- FIRST: the first matching rule routes the request to one step (routing tiers);
- RULE_ORDER: every matching rule adds a step, in rule order (a sequential chain);
- COLLECT: every matching rule adds a step, all open at once, and `quorum` approvals decide (e.g. 2 of 3).
No matching rule means no approval is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class DocumentKind(StrEnum):
    quote = "quote"
    credit_hold = "credit_hold"
    purchase_order = "purchase_order"
    vendor_bill_exception = "vendor_bill_exception"
    customer_return = "customer_return"
    stock_adjustment = "stock_adjustment"


class HitPolicy(StrEnum):
    first = "FIRST"
    rule_order = "RULE_ORDER"
    collect = "COLLECT"


class ExpiryAction(StrEnum):
    reject = "reject"
    approve = "approve"


NUMERIC_FACTS = frozenset({"amount", "discount_percent", "margin_percent"})
TEXT_FACTS = frozenset({"customer_segment", "category", "branch", "requester"})
NUMERIC_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})
TEXT_OPS = frozenset({"==", "!=", "in", "not_in"})


@dataclass(frozen=True)
class Condition:
    fact: str
    op: str
    value: Decimal | str | tuple[str, ...]


@dataclass(frozen=True)
class StepSla:
    remind_after_hours: int | None = 24
    escalate_after_hours: int | None = 48
    escalate_to_groups: tuple[str, ...] = ()
    expire_after_hours: int | None = 120
    expire_action: ExpiryAction = ExpiryAction.reject


@dataclass(frozen=True)
class StepSpec:
    name: str
    candidate_groups: tuple[str, ...] = ()
    candidate_users: tuple[str, ...] = ()
    sla: StepSla = field(default_factory=StepSla)
    delegable: bool = True


@dataclass(frozen=True)
class PolicyRule:
    rule_id: str
    conditions: tuple[Condition, ...]
    step: StepSpec


@dataclass(frozen=True)
class PolicyBody:
    kind: DocumentKind
    hit_policy: HitPolicy
    rules: tuple[PolicyRule, ...]
    quorum: int | None = None  # COLLECT only; None means every step must approve


@dataclass(frozen=True)
class RequestFacts:
    amount: Decimal = Decimal(0)
    discount_percent: Decimal = Decimal(0)
    margin_percent: Decimal = Decimal(100)
    customer_segment: str = ""
    category: str = ""
    branch: str = ""
    requester: str = ""


@dataclass(frozen=True)
class RoutedStep:
    step: StepSpec
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class Routing:
    """Which steps a request needs. `parallel` steps open together and `quorum` approvals decide."""

    steps: tuple[RoutedStep, ...]
    parallel: bool
    quorum: int

    @property
    def needs_approval(self) -> bool:
        return bool(self.steps)


def _holds(cond: Condition, facts: RequestFacts) -> bool:
    actual = getattr(facts, cond.fact)
    op, value = cond.op, cond.value
    if cond.fact in NUMERIC_FACTS:
        actual, value = Decimal(actual), Decimal(value)
        return {
            "<": actual < value,
            "<=": actual <= value,
            ">": actual > value,
            ">=": actual >= value,
            "==": actual == value,
            "!=": actual != value,
        }[op]
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    return (actual == value) if op == "==" else (actual != value)


def matches(rule: PolicyRule, facts: RequestFacts) -> bool:
    return all(_holds(c, facts) for c in rule.conditions)


def evaluate(policy: PolicyBody, facts: RequestFacts) -> Routing:
    hits = [r for r in policy.rules if matches(r, facts)]
    if policy.hit_policy == HitPolicy.first:
        hits = hits[:1]
    steps = tuple(RoutedStep(r.step, (r.rule_id,)) for r in hits)
    parallel = policy.hit_policy == HitPolicy.collect
    if parallel:
        quorum = min(policy.quorum or len(steps), len(steps))
    else:
        quorum = len(steps)
    return Routing(steps=steps, parallel=parallel, quorum=quorum)


# ------------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class PolicyProblem:
    where: str  # e.g. "rules[2].conditions[0].value"
    reason: str


def validate(policy: PolicyBody, known_groups: frozenset[str]) -> list[PolicyProblem]:
    """Everything wrong with a policy, each with where it is and why; an empty list means it may be saved."""
    problems: list[PolicyProblem] = []
    if not policy.rules:
        problems.append(PolicyProblem("rules", "a policy needs at least one rule"))
    seen_ids: set[str] = set()
    for i, rule in enumerate(policy.rules):
        at = f"rules[{i}]"
        if not rule.rule_id.strip():
            problems.append(PolicyProblem(f"{at}.rule_id", "every rule needs an id"))
        elif rule.rule_id in seen_ids:
            problems.append(PolicyProblem(f"{at}.rule_id", f"rule id {rule.rule_id!r} is used twice"))
        seen_ids.add(rule.rule_id)
        for j, cond in enumerate(rule.conditions):
            problems.extend(_condition_problems(cond, f"{at}.conditions[{j}]"))
        step = rule.step
        if not step.candidate_groups and not step.candidate_users:
            problems.append(PolicyProblem(f"{at}.step", "a step needs at least one candidate group or user"))
        for g in step.candidate_groups + step.sla.escalate_to_groups:
            if g not in known_groups:
                problems.append(PolicyProblem(f"{at}.step", f"unknown group {g!r}"))
        problems.extend(_sla_problems(step.sla, f"{at}.step.sla"))
    if policy.hit_policy == HitPolicy.collect and policy.quorum is not None:
        if policy.quorum < 1:
            problems.append(PolicyProblem("quorum", "quorum must be at least 1"))
        elif policy.quorum > len(policy.rules):
            problems.append(PolicyProblem("quorum", f"quorum {policy.quorum} exceeds the {len(policy.rules)} rules"))
    elif policy.quorum is not None and policy.hit_policy != HitPolicy.collect:
        problems.append(PolicyProblem("quorum", "quorum applies only to COLLECT policies"))
    if policy.hit_policy == HitPolicy.first and not problems:
        for i, a in enumerate(policy.rules):
            for j in range(i + 1, len(policy.rules)):
                b = policy.rules[j]
                if _may_overlap(a, b):
                    problems.append(
                        PolicyProblem(
                            f"rules[{j}]",
                            f"rule {b.rule_id!r} overlaps rule {a.rule_id!r}: under FIRST a request matching both"
                            f" would silently skip {b.rule_id!r}; make their conditions exclusive",
                        )
                    )
    return problems


def _condition_problems(cond: Condition, at: str) -> list[PolicyProblem]:
    if cond.fact in NUMERIC_FACTS:
        if cond.op not in NUMERIC_OPS:
            return [PolicyProblem(f"{at}.op", f"{cond.op!r} does not apply to the number {cond.fact}")]
        try:
            Decimal(str(cond.value))
        except Exception:
            return [PolicyProblem(f"{at}.value", f"{cond.value!r} is not a number")]
        return []
    if cond.fact in TEXT_FACTS:
        if cond.op not in TEXT_OPS:
            return [PolicyProblem(f"{at}.op", f"{cond.op!r} does not apply to {cond.fact}")]
        if cond.op in ("in", "not_in") and not (isinstance(cond.value, tuple) and cond.value):
            return [PolicyProblem(f"{at}.value", f"{cond.op} needs a non-empty list")]
        return []
    return [PolicyProblem(f"{at}.fact", f"unknown fact {cond.fact!r}")]


def _sla_problems(sla: StepSla, at: str) -> list[PolicyProblem]:
    out = []
    hours = [("remind_after_hours", sla.remind_after_hours), ("escalate_after_hours", sla.escalate_after_hours),
             ("expire_after_hours", sla.expire_after_hours)]
    for name, value in hours:
        if value is not None and value <= 0:
            out.append(PolicyProblem(f"{at}.{name}", "must be a positive number of hours"))
    ordered = [v for _, v in hours if v is not None]
    if ordered != sorted(ordered) or len(set(ordered)) != len(ordered):
        out.append(PolicyProblem(at, "reminder, escalation and expiry must come in that order"))
    if sla.escalate_after_hours is not None and not sla.escalate_to_groups:
        out.append(PolicyProblem(f"{at}.escalate_to_groups", "escalation needs a group to escalate to"))
    return out


# Overlap: two rules overlap when some request satisfies both. Conditions on different facts are
# independent, so the rules overlap iff, fact by fact, the constraints of both rules together are satisfiable.

_INF = Decimal("Infinity")


def _may_overlap(a: PolicyRule, b: PolicyRule) -> bool:
    facts = {c.fact for c in a.conditions + b.conditions}
    for fact in facts:
        conds = [c for c in a.conditions + b.conditions if c.fact == fact]
        satisfiable = _numeric_satisfiable(conds) if fact in NUMERIC_FACTS else _text_satisfiable(conds)
        if not satisfiable:
            return False
    return True


def _numeric_satisfiable(conds: list[Condition]) -> bool:
    low, low_open, high, high_open = -_INF, True, _INF, True
    excluded: set[Decimal] = set()
    for c in conds:
        v = Decimal(str(c.value))
        if c.op in (">", ">=") and (v > low or (v == low and c.op == ">")):
            low, low_open = v, c.op == ">"
        elif c.op in ("<", "<=") and (v < high or (v == high and c.op == "<")):
            high, high_open = v, c.op == "<"
        elif c.op == "==":
            if not (v > low or (v == low and not low_open)):
                return False
            if not (v < high or (v == high and not high_open)):
                return False
            low, low_open, high, high_open = v, False, v, False
        elif c.op == "!=":
            excluded.add(v)
    if low > high or (low == high and (low_open or high_open)):
        return False
    if low == high and low in excluded:
        return False
    return True


def _text_satisfiable(conds: list[Condition]) -> bool:
    allowed: set[str] | None = None
    banned: set[str] = set()
    for c in conds:
        values = set(c.value) if isinstance(c.value, tuple) else {c.value}
        if c.op in ("==", "in"):
            allowed = values if allowed is None else allowed & values
        else:
            banned |= values
    if allowed is None:
        return True  # only exclusions: some other value always satisfies them
    return bool(allowed - banned)
