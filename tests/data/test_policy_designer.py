"""The policy designer service over the store: diff in words, simulation against real request rows, the version
in force by effective date, full validation with where/reason, import/export, and the demo policies."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.approval_policies import PolicyError, body_from_json, create_draft, policy_in_force, publish, retire
from models.approvals import ApprovalPolicy, PolicyStatus
from models.demo_policies import DEMO_POLICIES, ensure_demo_policies
from models.policy_designer import (
    check,
    diff,
    export_policy,
    import_body,
    list_kinds,
    parse_body,
    simulate,
)
from models.records import AuditEvent
from tests.approval_world import add_people
from tests.policy_world import add_request, po_tiers, quote_chain, rule, sla
from workflows.approval_rules import DocumentKind, RequestFacts, evaluate


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as s:
        add_people(s)
        s.flush()
        yield s


def publish_body(session, data: dict, *, effective_from: date | None = None, author="paula.designer",
                 publisher="peter.designer") -> ApprovalPolicy:
    draft = create_draft(session, body_from_json(data), author=author, effective_from=effective_from)
    return publish(session, draft, publisher=publisher)


# ------------------------------------------------------------------------------------------- diff


def test_diff_names_each_change_rule_by_rule():
    before = body_from_json(quote_chain())
    changed = quote_chain(manager_over="15")
    changed["rules"][0]["step"]["candidate_groups"] = ["sales-manager", "finance"]
    changed["rules"][0]["step"]["sla"] = sla(["cfo"], remind=8, escalate=24, expire=72, action="approve")
    changed["rules"][0]["step"]["delegable"] = False
    changed["rules"][0]["conditions"].append({"fact": "category", "op": "in", "value": ["cables", "lighting"]})
    del changed["rules"][1]  # disc-cfo goes
    changed["rules"].insert(0, rule("big", [("amount", ">", "50000")], "CFO for big quotes", ["cfo"]))
    changed["hit_policy"] = "COLLECT"
    changed["quorum"] = 1

    d = diff(before, body_from_json(changed), from_version=1, to_version=2)

    assert (d.from_version, d.to_version, d.identical) == (1, 2, False)
    assert d.hit_policy.text == "hit policy Rule order (sequential chain) → Collect (parallel approvers)"
    assert d.quorum.text == "quorum every step → 1"
    by_id = {r.rule_id: r for r in d.rules}
    assert by_id["big"].status == "added" and by_id["big"].position_after == 1
    assert by_id["big"].changes[0].text == "new rule: when amount > 50,000 → CFO for big quotes (cfo)"
    assert by_id["disc-cfo"].status == "removed" and by_id["disc-cfo"].position_before == 2
    texts = [c.text for c in by_id["disc-manager"].changes]
    assert by_id["disc-manager"].status == "changed"
    assert "changes discount % > 10 → discount % > 15" in texts
    assert "adds condition category is one of cables, lighting" in texts
    assert "adds candidate group finance" in texts
    assert "reminder after 24 h → 8 h" in texts
    assert "escalation after 2 days → 24 h" in texts
    assert "expiry after 5 days → 3 days" in texts
    assert "on expiry: reject → approve" in texts
    assert "may no longer be delegated" in texts
    # COLLECT has no order, so the new first rule does not "move" the others
    assert not any(c.aspect == "position" for c in by_id["disc-manager"].changes)
    assert d.summary == [d.hit_policy.text, d.quorum.text, "1 rule added", "1 rule removed", "1 rule changed"]


def test_diff_reports_order_under_rule_order_and_renames_and_identity():
    base = quote_chain()
    swapped = quote_chain()
    swapped["rules"].reverse()
    d = diff(body_from_json(base), body_from_json(swapped))
    moves = {r.rule_id: [c.text for c in r.changes if c.aspect == "position"] for r in d.rules}
    assert moves == {"disc-cfo": ["moves from position 2 to 1"], "disc-manager": ["moves from position 1 to 2"]}

    renamed = quote_chain()
    renamed["rules"][1]["rule_id"] = "cfo-over-20"
    d = diff(body_from_json(base), body_from_json(renamed))
    assert [(r.rule_id, r.status, [c.text for c in r.changes]) for r in d.rules if r.status != "unchanged"] == [
        ("cfo-over-20", "changed", ["rule 'disc-cfo' renamed to 'cfo-over-20'"])]

    # "10" and "10.0" are the same threshold
    same = quote_chain(manager_over="10.0")
    d = diff(body_from_json(base), body_from_json(same))
    assert d.identical and d.summary == ["no changes"]

    d = diff(None, body_from_json(base))
    assert not d.identical and {r.status for r in d.rules} == {"added"}
    assert d.summary == ["no published version to compare with: all 2 rules are new"]


# ------------------------------------------------------------------------------------------- simulation


def test_simulation_reports_per_request_routing_then_and_now(session):
    publish_body(session, quote_chain())  # v1: manager above 10 %, CFO above 20 %
    add_request(session, 1, discount="5")  # no approval then; none now
    add_request(session, 2, discount="12")  # manager then; none now (threshold moves to 15)
    add_request(session, 3, discount="25")  # manager + CFO then; manager + CFO now
    add_request(session, 4, discount="18")  # manager then; manager now
    add_request(session, 5, kind="purchase_order", amount="90000")  # another kind: not replayed
    draft = body_from_json(quote_chain(manager_over="15"))

    sim = simulate(session, draft, draft_version=2)

    assert [r.request_key for r in sim.requests] == ["quote:R-00004", "quote:R-00003", "quote:R-00002",
                                                    "quote:R-00001"]  # most recent first
    by_key = {r.request_key: r for r in sim.requests}
    r2 = by_key["quote:R-00002"]
    assert r2.then.policy_version == 1 and r2.now.policy_version == 2
    assert [(s.name, s.groups, s.rule_ids) for s in r2.then.steps] == [
        ("Sales manager approval", ["sales-manager"], ["disc-manager"])]
    assert r2.now.steps == [] and r2.now.text == "no approval needed"
    assert (r2.change, r2.differs) == ("no_longer_needs_approval", True)
    r3 = by_key["quote:R-00003"]
    assert [s.rule_ids for s in r3.now.steps] == [["disc-manager"], ["disc-cfo"]]
    assert r3.then.text == "Sales manager approval (sales-manager) → CFO approval (cfo)"
    assert (r3.change, r3.differs) == ("unchanged", False)
    assert by_key["quote:R-00001"].change == "unchanged"
    assert by_key["quote:R-00004"].change == "unchanged"
    assert r2.facts["discount_percent"] == "12" and r2.facts["branch"] == "NBG"

    t = sim.totals
    assert (t.requests, t.differs, t.no_longer_needs_approval, t.unchanged) == (4, 1, 1, 3)
    assert (t.needing_approval_then, t.needing_approval_now, t.steps_then, t.steps_now) == (3, 2, 4, 3)
    load = {x.approver: (x.then, x.now, x.delta) for x in sim.load}
    assert load == {"sales-manager": (3, 2, -1), "cfo": (1, 1, 0)}
    assert sim.in_force_version == 1 and sim.baseline_versions == [1]


def test_simulation_classifies_new_rerouted_and_terms_changed(session):
    publish_body(session, quote_chain())
    add_request(session, 1, discount="5", amount="80000")  # nothing then; CFO now (new big-amount rule)
    add_request(session, 2, discount="12")  # manager then; finance now (group swapped)
    add_request(session, 3, discount="25")  # manager + CFO, CFO with other SLA now
    draft = quote_chain()
    draft["rules"][0]["step"]["candidate_groups"] = ["finance"]
    draft["rules"][1]["step"]["sla"] = sla(["admin"], remind=4)
    draft["rules"].append(rule("big", [("amount", ">", "50000"), ("discount_percent", "<=", "10")], "CFO big",
                               ["cfo"]))
    sim = simulate(session, body_from_json(draft))
    by_key = {r.request_key: r for r in sim.requests}

    assert by_key["quote:R-00001"].change == "now_needs_approval"
    assert by_key["quote:R-00001"].changes == ["now needs approval: CFO big (cfo)"]
    r2 = by_key["quote:R-00002"]
    assert r2.change == "rerouted"
    assert r2.changes == ["adds step Sales manager approval (finance) by rule disc-manager",
                          "drops step Sales manager approval (sales-manager)"]
    r3 = by_key["quote:R-00003"]
    assert r3.change == "rerouted"  # the manager step went to finance here too
    # same approvers, other deadlines: reported, but not "routes differently"
    only_sla = quote_chain()
    only_sla["rules"][1]["step"]["sla"] = sla(["admin"], remind=4)
    sim2 = simulate(session, body_from_json(only_sla))
    r3b = next(r for r in sim2.requests if r.request_key == "quote:R-00003")
    assert (r3b.change, r3b.differs) == ("terms_changed", False)
    assert r3b.changes == ["CFO approval: remind after 24 h; escalate after 2 days to admin; expire after 5 days: "
                           "reject → remind after 4 h; escalate after 2 days to admin; expire after 5 days: reject"]
    assert sim2.totals.differs == 0 and sim2.totals.terms_changed == 1
    assert sim.totals.differs == 3 and sim.totals.now_needs_approval == 1 and sim.totals.rerouted == 2


def test_simulation_compares_with_the_version_each_request_pinned(session):
    publish_body(session, quote_chain())  # v1: manager above 10
    publish_body(session, quote_chain(manager_over="15"))  # v2 is in force now
    add_request(session, 1, discount="12", policy_version=1)  # routed by v1: manager
    add_request(session, 2, discount="12", policy_version=2)  # routed by v2: nothing
    draft = body_from_json(quote_chain(manager_over="15"))  # the same rules as v2

    pinned = simulate(session, draft)
    assert {r.request_key: (r.then.policy_version, r.change) for r in pinned.requests} == {
        "quote:R-00001": (1, "no_longer_needs_approval"), "quote:R-00002": (2, "unchanged")}
    assert pinned.baseline_versions == [1, 2]

    today_rules = simulate(session, draft, baseline="in_force")
    assert {r.request_key: (r.then.policy_version, r.change) for r in today_rules.requests} == {
        "quote:R-00001": (2, "unchanged"), "quote:R-00002": (2, "unchanged")}
    assert today_rules.totals.differs == 0


def test_simulation_without_a_pin_uses_the_version_in_force_on_the_requests_day(session):
    publish_body(session, quote_chain(), effective_from=date(2026, 1, 1))  # v1
    publish_body(session, quote_chain(manager_over="15"), effective_from=date(2026, 6, 1))  # v2
    add_request(session, 1, discount="12", policy_version=None, created_at=datetime(2026, 3, 1, tzinfo=UTC))
    add_request(session, 2, discount="12", policy_version=None, created_at=datetime(2026, 7, 1, tzinfo=UTC))
    add_request(session, 3, discount="12", policy_version=None, created_at=datetime(2025, 7, 1, tzinfo=UTC))
    sim = simulate(session, body_from_json(quote_chain(manager_over="11")))
    then = {r.request_key: r.then.policy_version for r in sim.requests}
    assert then == {"quote:R-00001": 1, "quote:R-00002": 2, "quote:R-00003": None}
    # before any policy existed nothing needed approval; the draft would ask for a manager
    assert next(r for r in sim.requests if r.request_key == "quote:R-00003").change == "now_needs_approval"


def test_simulation_takes_the_most_recent_requests_and_skips_unreadable_facts(session):
    publish_body(session, quote_chain())
    for n in range(1, 8):
        add_request(session, n, discount=str(n * 4))
    add_request(session, 8, facts={"amount": "1000", "discount_percent": "lots"})
    sim = simulate(session, body_from_json(quote_chain()), limit=4)
    assert [r.request_key for r in sim.requests] == ["quote:R-00007", "quote:R-00006", "quote:R-00005"]
    assert [(s.request_key, s.reason) for s in sim.skipped] == [("quote:R-00008", "discount % 'lots' is not a number")]
    assert sim.totals.requests == 3 and sim.totals.skipped == 1 and sim.limit == 4
    # facts the row lacks come from its columns and the defaults the workflow uses
    add_request(session, 9, amount="70000", facts={})
    sim = simulate(session, body_from_json(quote_chain()), limit=1)
    assert sim.requests[0].facts["amount"] == "70000.00" and sim.requests[0].facts["requester"] == "sam.sales"


def test_simulation_of_a_kind_with_no_requests_is_empty(session):
    sim = simulate(session, body_from_json(po_tiers()))
    assert sim.requests == [] and sim.totals.requests == 0 and sim.in_force_version is None


# ------------------------------------------------------------------------------------------- versions


def test_the_version_in_force_follows_effective_dates_and_retirement(session):
    v1 = publish_body(session, quote_chain(), effective_from=date(2026, 1, 1))
    v2 = publish_body(session, quote_chain(manager_over="12"), effective_from=date(2026, 6, 1))
    v3 = publish_body(session, quote_chain(manager_over="14"), effective_from=date(2027, 1, 1))
    create_draft(session, body_from_json(quote_chain(manager_over="16")), author="paula.designer")

    def states(as_of):
        quote = next(k for k in list_kinds(session, as_of) if k.kind == "quote")
        return quote.in_force_version, {v.version: (v.status.value, v.in_force, v.scheduled, v.superseded)
                                        for v in quote.versions}

    assert states(date(2026, 3, 1)) == (1, {4: ("draft", False, False, False), 3: ("published", False, True, False),
                                            2: ("published", False, True, False),
                                            1: ("published", True, False, False)})
    assert states(date(2026, 11, 1))[0] == 2
    assert states(date(2026, 11, 1))[1][1] == ("published", False, False, True)
    assert states(date(2027, 2, 1))[0] == 3
    assert states(date(2025, 12, 31))[0] is None
    retire(session, v2)
    assert states(date(2026, 11, 1))[0] == 1  # the earlier version is in force again
    kinds = list_kinds(session, date(2026, 11, 1))
    assert [k.kind for k in kinds] == [k.value for k in DocumentKind]  # kinds without a policy are listed too
    assert next(k for k in kinds if k.kind == "quote").draft_count == 1
    assert v1.status == PolicyStatus.published and v3.status == PolicyStatus.published


def test_a_version_published_without_a_date_is_in_force_from_its_publication_day_only(session):
    v1 = publish_body(session, quote_chain())
    today = v1.published_at.date()
    assert v1.effective_from == today
    assert policy_in_force(session, "quote", today).version == 1
    assert policy_in_force(session, "quote", today - timedelta(days=1)) is None


def test_the_author_cannot_publish_their_own_draft(session):
    draft = create_draft(session, body_from_json(quote_chain()), author="paula.designer")
    with pytest.raises(PolicyError, match="author"):
        publish(session, draft, publisher="paula.designer")
    assert draft.status == PolicyStatus.draft


# ------------------------------------------------------------------------------------------- validation


def test_check_lists_every_problem_with_where_and_reason(session):
    data = po_tiers()
    data["rules"][1]["conditions"] = [{"fact": "amount", "op": ">", "value": "20000"}]  # overlaps po-small
    problems = check(session, body_from_json(data))
    assert [(p.where, p.reason) for p in problems] == [
        ("rules[1]", "rule 'po-large' overlaps rule 'po-small': under FIRST a request matching both would silently "
                     "skip 'po-large'; make their conditions exclusive")]

    data = quote_chain()
    data["rules"][0]["step"]["candidate_groups"] = ["sales-managers"]
    data["rules"][0]["step"]["candidate_users"] = ["nobody.here"]
    data["rules"][1]["step"]["candidate_groups"] = []
    data["rules"][1]["step"]["sla"] = sla(["admin"], remind=72, escalate=48)
    data["rules"][1]["conditions"].append({"fact": "branch", "op": "==", "value": ["NBG", "WUE"]})
    problems = {(p.where, p.reason) for p in check(session, body_from_json(data), kind="quote")}
    assert problems == {
        ("rules[0].step", "unknown group 'sales-managers'"),
        ("rules[0].step", "unknown or inactive user 'nobody.here'"),
        ("rules[1].step", "a step needs at least one candidate group or user"),
        ("rules[1].step.sla", "reminder, escalation and expiry must come in that order"),
        ("rules[1].conditions[1].value", "branch is compared with one text; use 'is one of' for a list"),
    }
    assert [(p.where, p.reason) for p in check(session, body_from_json(quote_chain()), kind="purchase_order")] == [
        ("kind", "this is a quote policy, not a purchase_order policy")]
    empty = {"kind": "quote", "hit_policy": "FIRST", "rules": []}
    assert [(p.where, p.reason) for p in check(session, body_from_json(empty))] == [
        ("rules", "a policy needs at least one rule")]


def test_parse_body_says_where_a_malformed_body_is_wrong():
    data = quote_chain()
    data["hit_policy"] = "UNIQUE"
    data["rules"][0]["conditions"][0]["value"] = {"x": 1}
    data["rules"][1]["step"]["sla"]["remind_after_hours"] = "soon"
    with pytest.raises(PolicyError) as caught:
        parse_body(data)
    where = {p.where: p.reason for p in caught.value.problems}
    assert set(where) == {"hit_policy", "rules[0].conditions[0].value", "rules[1].step.sla.remind_after_hours"}
    assert where["rules[0].conditions[0].value"] == "must be a number, a text, or a list of texts"
    assert "FIRST" in where["hit_policy"]
    with pytest.raises(PolicyError) as caught:
        parse_body(["not", "an", "object"])
    assert [(p.where, p.reason) for p in caught.value.problems] == [("body", "expected a JSON object")]


# ------------------------------------------------------------------------------------------- import / export


def test_export_then_import_gives_the_same_rules(session):
    policy = publish_body(session, po_tiers())
    document = export_policy(policy)
    assert document["format"] == "tradeflow.approval-policy" and document["version"] == 1
    text = json.dumps(document)
    assert import_body(text) == body_from_json(policy.body)
    assert import_body(po_tiers()) == body_from_json(policy.body)  # a bare body is fine too

    document["body"]["rules"][0]["step"]["sla"]["expire_action"] = "shrug"
    with pytest.raises(PolicyError) as caught:
        import_body(document)
    assert [p.where for p in caught.value.problems] == ["body.rules[0].step.sla.expire_action"]
    with pytest.raises(PolicyError) as caught:
        import_body("{not json")
    assert caught.value.problems[0].where == "body" and "not valid JSON" in caught.value.problems[0].reason
    with pytest.raises(PolicyError) as caught:
        import_body({**document, "format": "camunda.dmn"})
    assert caught.value.problems[0].where == "format"


# ------------------------------------------------------------------------------------------- demo policies


def test_demo_policies_cover_every_kind_with_four_eyes_and_are_idempotent(session):
    first = ensure_demo_policies(session, author="paula.designer", publisher="peter.designer")
    assert sorted(first.published) == sorted(f"{k.value} v1" for k in DocumentKind) and first.skipped == []
    rows = session.scalars(select(ApprovalPolicy)).all()
    assert len(rows) == len(DocumentKind)
    for row in rows:
        assert row.status == PolicyStatus.published
        assert row.authored_by == "paula.designer" and row.published_by == "peter.designer"
        assert check(session, body_from_json(row.body), kind=row.kind) == []
    events = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_kind == "approval_policy")).all()
    assert sorted(events) == sorted(["policy_create", "policy_publish"] * len(DocumentKind))

    again = ensure_demo_policies(session, author="paula.designer", publisher="peter.designer")
    assert again.published == [] and sorted(again.skipped) == sorted(k.value for k in DocumentKind)
    assert len(session.scalars(select(ApprovalPolicy)).all()) == len(DocumentKind)


def test_demo_policies_refuse_one_person_as_author_and_publisher(session):
    with pytest.raises(PolicyError, match="author"):
        ensure_demo_policies(session, author="paula.designer", publisher="paula.designer")


def _route(kind: DocumentKind, **facts) -> list[tuple[str, tuple[str, ...]]]:
    body = DEMO_POLICIES[kind][0]()
    routing = evaluate(body, RequestFacts(**{k: D(v) if k.endswith(("amount", "percent")) else v
                                            for k, v in facts.items()}))
    return [(s.rule_ids[0], s.step.candidate_groups) for s in routing.steps]


def test_demo_policies_route_like_the_distributor_expects():
    quote = DocumentKind.quote
    assert _route(quote, discount_percent="5", margin_percent="25", amount="8000") == []
    assert _route(quote, discount_percent="12", margin_percent="25") == [("Q-DISC-10", ("sales-manager",))]
    assert _route(quote, discount_percent="5", margin_percent="9") == [("Q-MARGIN-12", ("sales-manager",))]
    assert _route(quote, discount_percent="25", margin_percent="9", amount="90000") == [
        ("Q-DISC-10", ("sales-manager",)), ("Q-DISC-20", ("cfo",))]  # one manager step, one CFO step
    assert _route(quote, discount_percent="0", margin_percent="30", amount="60000") == [("Q-AMOUNT-50K", ("cfo",))]
    po = DocumentKind.purchase_order
    assert _route(po, amount="4999") == []
    assert _route(po, amount="12000") == [("PO-TIER-1", ("purchasing-manager",))]
    assert _route(po, amount="30000") == [("PO-TIER-2", ("cfo",))]
    assert _route(DocumentKind.credit_hold, amount="1000") == [("CH-CONTROLLER", ("credit-controller",))]
    assert _route(DocumentKind.credit_hold, amount="80000") == [("CH-CONTROLLER", ("credit-controller",)),
                                                                 ("CH-LARGE-50K", ("cfo",))]
    assert _route(DocumentKind.vendor_bill_exception, amount="120") == [("VB-MINOR", ("finance",))]
    assert _route(DocumentKind.vendor_bill_exception, amount="20000") == [("VB-CRITICAL", ("cfo",))]
    assert _route(DocumentKind.stock_adjustment, amount="50") == []
    assert _route(DocumentKind.stock_adjustment, amount="5000") == [("SA-WAREHOUSE-100", ("warehouse",)),
                                                                     ("SA-FINANCE-1000", ("finance",))]
    returns = DEMO_POLICIES[DocumentKind.customer_return][0]()
    small = evaluate(returns, RequestFacts(amount=D("300")))
    large = evaluate(returns, RequestFacts(amount=D("3000")))
    assert (small.parallel, small.quorum, len(small.steps)) == (True, 2, 2)
    assert (large.parallel, large.quorum, len(large.steps)) == (True, 2, 3)
    minor = DEMO_POLICIES[DocumentKind.vendor_bill_exception][0]().rules[0].step.sla
    assert minor.expire_action.value == "approve"  # small differences pass unless finance objects
