"""Approval policy evaluation (FIRST, RULE_ORDER, COLLECT with quorum) and policy validation."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from workflows.approval_rules import (
    Condition,
    DocumentKind,
    HitPolicy,
    PolicyBody,
    PolicyRule,
    RequestFacts,
    StepSla,
    StepSpec,
    evaluate,
    validate,
)

GROUPS = frozenset({"sales-manager", "cfo", "credit-controller", "finance", "quality"})
SLA = StepSla(escalate_to_groups=("cfo",))


def rule(rule_id, *conds, groups=("sales-manager",)):
    return PolicyRule(rule_id, tuple(Condition(*c) for c in conds), StepSpec(rule_id, tuple(groups), sla=SLA))


TIERS = PolicyBody(
    DocumentKind.quote,
    HitPolicy.first,
    (
        rule("big", ("amount", ">=", D("50000")), groups=("cfo",)),
        rule("mid", ("amount", ">=", D("10000")), ("amount", "<", D("50000"))),
        rule("deep-discount", ("discount_percent", ">", D("15")), ("amount", "<", D("10000"))),
    ),
)


@pytest.mark.parametrize(
    ("amount", "discount", "expected"),
    [
        (D("75000"), D("0"), ["big"]),
        (D("50000"), D("0"), ["big"]),
        (D("49999.99"), D("30"), ["mid"]),
        (D("9000"), D("20"), ["deep-discount"]),
        (D("9000"), D("15"), []),
    ],
)
def test_first_routes_to_the_first_matching_tier(amount, discount, expected):
    routing = evaluate(TIERS, RequestFacts(amount=amount, discount_percent=discount))
    assert [s.rule_ids[0] for s in routing.steps] == expected
    assert routing.needs_approval == bool(expected)
    assert validate(TIERS, GROUPS) == []


def test_rule_order_builds_a_sequential_chain_in_rule_order():
    chain = PolicyBody(
        DocumentKind.purchase_order,
        HitPolicy.rule_order,
        (
            rule("manager", ("amount", ">", D("1000")), groups=("sales-manager",)),
            rule("finance", ("amount", ">", D("20000")), groups=("finance",)),
            rule("cfo", ("amount", ">", D("100000")), groups=("cfo",)),
        ),
    )
    routing = evaluate(chain, RequestFacts(amount=D("25000")))
    assert [s.step.candidate_groups for s in routing.steps] == [("sales-manager",), ("finance",)]
    assert (routing.parallel, routing.quorum) == (False, 2)


def test_collect_opens_parallel_steps_with_a_quorum():
    parallel = PolicyBody(
        DocumentKind.customer_return,
        HitPolicy.collect,
        (
            rule("quality", ("category", "in", ("Cables", "Breakers")), groups=("quality",)),
            rule("finance", ("amount", ">", D("500")), groups=("finance",)),
            rule("manager", ("customer_segment", "!=", "retailer"), groups=("sales-manager",)),
        ),
        quorum=2,
    )
    routing = evaluate(parallel, RequestFacts(amount=D("800"), category="Cables", customer_segment="contractor"))
    assert [s.rule_ids for s in routing.steps] == [("quality",), ("finance",), ("manager",)]
    assert (routing.parallel, routing.quorum) == (True, 2)
    # Fewer matches than the quorum: every matched step must approve.
    small = evaluate(parallel, RequestFacts(amount=D("10"), category="Fixings", customer_segment="contractor"))
    assert (len(small.steps), small.quorum) == (1, 1)


def test_requester_and_text_facts():
    body = PolicyBody(DocumentKind.stock_adjustment, HitPolicy.first,
                      (rule("intern", ("requester", "==", "tim.trainee")),))
    assert evaluate(body, RequestFacts(requester="tim.trainee")).needs_approval
    assert not evaluate(body, RequestFacts(requester="wanda.warehouse")).needs_approval


def where(problems):
    return {(p.where, p.reason.split(":")[0]) for p in problems}


def test_overlapping_rules_under_first_are_refused():
    overlapping = PolicyBody(
        DocumentKind.quote,
        HitPolicy.first,
        (rule("a", ("amount", ">=", D("1000"))), rule("b", ("amount", "<=", D("5000")), ("branch", "==", "NBG"))),
    )
    problems = validate(overlapping, GROUPS)
    assert len(problems) == 1 and problems[0].where == "rules[1]" and "overlaps rule 'a'" in problems[0].reason
    # Touching but exclusive bounds do not overlap; neither do disjoint text values.
    exclusive = PolicyBody(
        DocumentKind.quote,
        HitPolicy.first,
        (
            rule("a", ("amount", ">=", D("1000"))),
            rule("b", ("amount", "<", D("1000"))),
            rule("c", ("amount", ">=", D("1000"))),  # overlaps a
        ),
    )
    assert [p.where for p in validate(exclusive, GROUPS)] == ["rules[2]"]
    segments = PolicyBody(
        DocumentKind.quote,
        HitPolicy.first,
        (rule("x", ("customer_segment", "in", ("retailer", "oem"))), rule("y", ("customer_segment", "==", "project"))),
    )
    assert validate(segments, GROUPS) == []


def test_validation_names_every_problem_and_where():
    bad = PolicyBody(
        DocumentKind.quote,
        HitPolicy.rule_order,
        (
            PolicyRule("r1", (Condition("amount", "in", D("1")),), StepSpec("s", ("nobody",), sla=SLA)),
            PolicyRule("r1", (Condition("colour", "==", "red"),), StepSpec("s", (), sla=SLA)),
            PolicyRule("r3", (), StepSpec("s", ("cfo",), sla=StepSla(remind_after_hours=50, escalate_after_hours=48))),
        ),
        quorum=2,
    )
    found = where(validate(bad, GROUPS))
    assert ("rules[0].conditions[0].op", "'in' does not apply to the number amount") in found
    assert ("rules[0].step", "unknown group 'nobody'") in found
    assert ("rules[1].rule_id", "rule id 'r1' is used twice") in found
    assert ("rules[1].conditions[0].fact", "unknown fact 'colour'") in found
    assert ("rules[1].step", "a step needs at least one candidate group or user") in found
    assert ("rules[2].step.sla", "reminder, escalation and expiry must come in that order") in found
    assert ("rules[2].step.sla.escalate_to_groups", "escalation needs a group to escalate to") in found
    assert ("quorum", "quorum applies only to COLLECT policies") in found
    empty = PolicyBody(DocumentKind.quote, HitPolicy.first, ())
    assert where(validate(empty, GROUPS)) == {("rules", "a policy needs at least one rule")}
