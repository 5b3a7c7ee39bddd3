"""The policies JSON API: who may read and write, drafts, validation as 422 with where/reason, four eyes on
publishing, published versions never change, the version in force by effective date, diff, simulation,
export/import, and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.approvals import ApprovalPolicy, PolicyStatus
from models.policy_designer import today
from models.records import AuditEvent
from tests.policy_world import add_request, as_user, browser, policy_app, po_tiers, quote_chain, rule, sla  # noqa: F401

API = "/api/v1/policies"


def audit_actions(engine, entity_id: str) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [(e.actor, e.action, e.reason) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.entity_kind == "approval_policy", AuditEvent.entity_id == entity_id)
            .order_by(AuditEvent.id))]


def stored(engine, kind: str, version: int) -> ApprovalPolicy | None:
    with Session(engine) as session:
        return session.scalars(select(ApprovalPolicy).where(ApprovalPolicy.kind == kind,
                                                            ApprovalPolicy.version == version)).first()


@pytest.fixture
def paula(as_user):
    return as_user("paula.designer")


@pytest.fixture
def peter(as_user):
    return as_user("peter.designer")


def make_published(author, publisher, body: dict, **extra) -> dict:
    created = author.post(f"{API}/{body['kind']}/drafts", json={"body": body, **extra})
    assert created.status_code == 201, created.text
    version = created.json()["version"]
    done = publisher.post(f"{API}/{body['kind']}/{version}/publish")
    assert done.status_code == 200, done.text
    return done.json()


# ------------------------------------------------------------------------------------------- access


def test_everyone_logged_in_reads_only_designers_and_admins_write(policy_app, as_user):
    from fastapi.testclient import TestClient

    with TestClient(policy_app) as anonymous:
        assert anonymous.get(API).status_code == 401
    sam = as_user("sam.sales")
    listing = sam.get(API)
    assert listing.status_code == 200
    assert [k["kind"] for k in listing.json()["kinds"]] == [
        "quote", "credit_hold", "purchase_order", "vendor_bill_exception", "customer_return", "stock_adjustment"]
    refused = sam.post(f"{API}/quote/drafts", json={"body": quote_chain()})
    assert refused.status_code == 403 and "process-designer" in refused.json()["detail"]
    admin = as_user("ada.admin")
    assert admin.post(f"{API}/quote/drafts", json={"body": quote_chain()}).status_code == 201


def test_a_browser_session_needs_the_csrf_token_to_write(browser):
    client = browser("paula.designer")
    refused = client.post(f"{API}/quote/drafts", json={"body": quote_chain()})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    token = client.get("/api/v1/me").headers["X-CSRF-Token"]
    assert client.post(f"{API}/quote/drafts", json={"body": quote_chain()},
                       headers={"X-CSRF-Token": token}).status_code == 201


# ------------------------------------------------------------------------------------------- drafts and validation


def test_create_draft_numbers_versions_and_records_an_audit_event(engine, paula):
    first = paula.post(f"{API}/quote/drafts", json={"body": quote_chain(), "note": "first try"})
    assert first.status_code == 201, first.text
    data = first.json()
    assert (data["kind"], data["version"], data["status"], data["authored_by"]) == ("quote", 1, "draft",
                                                                                   "paula.designer")
    assert data["rule_count"] == 2 and data["hit_policy"] == "RULE_ORDER" and data["note"] == "first try"
    assert data["hit_policy_text"].startswith("Rule order:")
    assert data["body"]["rules"][0]["rule_id"] == "disc-manager"
    second = paula.post(f"{API}/quote/drafts", json={"body": quote_chain("12")})
    assert second.json()["version"] == 2
    assert paula.post(f"{API}/purchase_order/drafts", json={"body": po_tiers()}).json()["version"] == 1
    assert audit_actions(engine, "quote:v1") == [("paula.designer", "policy_create", "")]


def test_validate_answers_422_listing_every_problem(paula):
    ok = paula.post(f"{API}/validate", json=po_tiers())
    assert ok.status_code == 200 and ok.json() == {"valid": True, "problems": []}

    overlapping = po_tiers()
    overlapping["rules"][1]["conditions"] = [{"fact": "amount", "op": ">=", "value": "25000"}]  # 25000 in both
    answer = paula.post(f"{API}/validate", json=overlapping)
    assert answer.status_code == 422
    assert answer.json()["problems"] == [{
        "where": "rules[1]",
        "reason": "rule 'po-large' overlaps rule 'po-small': under FIRST a request matching both would silently "
                  "skip 'po-large'; make their conditions exclusive"}]

    broken = quote_chain()
    broken["rules"][0]["step"]["candidate_groups"] = ["sales-mgr"]
    broken["rules"][1]["step"]["candidate_groups"] = []
    broken["rules"][1]["step"]["sla"] = sla(["admin"], remind=100, escalate=48, expire=120)
    answer = paula.post(f"{API}/validate", json=broken)
    assert answer.status_code == 422
    assert answer.json()["detail"] == "the policy has 3 problems"
    assert sorted((p["where"], p["reason"]) for p in answer.json()["problems"]) == [
        ("rules[0].step", "unknown group 'sales-mgr'"),
        ("rules[1].step", "a step needs at least one candidate group or user"),
        ("rules[1].step.sla", "reminder, escalation and expiry must come in that order"),
    ]

    empty = paula.post(f"{API}/validate", json={"kind": "quote", "hit_policy": "RULE_ORDER", "rules": []})
    assert empty.status_code == 422
    assert empty.json()["problems"] == [{"where": "rules", "reason": "a policy needs at least one rule"}]

    malformed = quote_chain()
    malformed["hit_policy"] = "ANY"
    malformed["rules"][0]["conditions"][0]["value"] = [1, {"a": 2}]
    answer = paula.post(f"{API}/validate", json=malformed)
    assert answer.status_code == 422
    assert {p["where"] for p in answer.json()["problems"]} == {"hit_policy", "rules[0].conditions[0].value"}


def test_an_invalid_draft_is_refused_whole_and_nothing_is_stored(engine, paula):
    bad = po_tiers()
    bad["rules"][0]["step"]["candidate_groups"] = ["buyers"]
    answer = paula.post(f"{API}/purchase_order/drafts", json={"body": bad})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [{"where": "rules[0].step", "reason": "unknown group 'buyers'"}]
    assert stored(engine, "purchase_order", 1) is None
    wrong_kind = paula.post(f"{API}/purchase_order/drafts", json={"body": quote_chain()})
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["problems"][0] == {"where": "kind",
                                                "reason": "this is a quote policy, not a purchase_order policy"}
    nothing = paula.post(f"{API}/quote/drafts", json={"note": "empty"})
    assert nothing.status_code == 422 and nothing.json()["problems"][0]["where"] == "body"


def test_update_replaces_a_draft_and_a_published_version_never_changes(engine, paula, peter):
    paula.post(f"{API}/quote/drafts", json={"body": quote_chain()})
    changed = paula.put(f"{API}/quote/1", json={"body": quote_chain("15"), "note": "raise to 15 %"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["body"]["rules"][0]["conditions"][0]["value"] == "15"
    assert changed.json()["note"] == "raise to 15 %"

    invalid = paula.put(f"{API}/quote/1", json={"body": {**quote_chain(), "rules": []}})
    assert invalid.status_code == 422
    assert stored(engine, "quote", 1).body["rules"][0]["conditions"][0]["value"] == "15"  # untouched

    assert peter.post(f"{API}/quote/1/publish").status_code == 200
    sha = stored(engine, "quote", 1).body_sha256
    refused = paula.put(f"{API}/quote/1", json={"body": quote_chain("30")})
    assert refused.status_code == 409
    assert refused.json()["detail"] == ("version 1 is published; only drafts can be edited (copy it to a new draft)")
    assert stored(engine, "quote", 1).body_sha256 == sha
    assert [a for _, a, _ in audit_actions(engine, "quote:v1")] == [
        "policy_create", "policy_update", "policy_publish", "policy_update_refused"]


def test_copy_of_a_version_makes_the_next_draft_with_the_same_rules(paula, peter):
    make_published(paula, peter, quote_chain())
    copy = paula.post(f"{API}/quote/drafts", json={"copy_of": 1})
    assert copy.status_code == 201
    assert (copy.json()["version"], copy.json()["status"], copy.json()["note"]) == (2, "draft", "copy of version 1")
    assert copy.json()["body"] == paula.get(f"{API}/quote/1").json()["body"]
    assert paula.post(f"{API}/quote/drafts", json={"copy_of": 9}).status_code == 404


# ------------------------------------------------------------------------------------------- four eyes


def test_the_author_cannot_publish_and_a_second_designer_can(engine, paula, peter):
    paula.post(f"{API}/quote/drafts", json={"body": quote_chain()})
    refused = paula.post(f"{API}/quote/1/publish")
    assert refused.status_code == 403
    assert "author" in refused.json()["detail"] and "four eyes" in refused.json()["detail"]
    assert stored(engine, "quote", 1).status == PolicyStatus.draft

    done = peter.post(f"{API}/quote/1/publish")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["published_by"], done.json()["in_force"]) == ("published",
                                                                                          "peter.designer", True)
    again = peter.post(f"{API}/quote/1/publish")
    assert again.status_code == 409 and again.json()["detail"].startswith("version 1 is already published")
    actions = audit_actions(engine, "quote:v1")
    assert actions[1][:2] == ("paula.designer", "policy_publish_refused") and "author" in actions[1][2]
    assert actions[2][:2] == ("peter.designer", "policy_publish")
    assert actions[3][:2] == ("peter.designer", "policy_publish_refused")


def test_whoever_edits_a_draft_last_is_its_author(paula, peter):
    paula.post(f"{API}/quote/drafts", json={"body": quote_chain()})
    peter.put(f"{API}/quote/1", json={"body": quote_chain("11")})
    assert peter.post(f"{API}/quote/1/publish").status_code == 403
    assert paula.post(f"{API}/quote/1/publish").status_code == 200


def test_publishing_rechecks_the_rules_against_todays_groups(engine, paula, peter):
    from models.users import Group

    with Session(engine) as session, session.begin():
        session.add(Group(name="night-shift"))
    body = po_tiers()
    body["rules"][0]["step"]["candidate_groups"] = ["night-shift"]
    assert paula.post(f"{API}/purchase_order/drafts", json={"body": body}).status_code == 201
    with Session(engine) as session, session.begin():
        session.delete(session.scalars(select(Group).where(Group.name == "night-shift")).one())
    refused = peter.post(f"{API}/purchase_order/1/publish")
    assert refused.status_code == 422
    assert refused.json()["problems"] == [{"where": "rules[0].step", "reason": "unknown group 'night-shift'"}]


# ------------------------------------------------------------------------------------------- in force, retire


def test_the_version_in_force_follows_effective_dates(paula, peter):
    make_published(paula, peter, quote_chain(), effective_from=(today() - timedelta(days=10)).isoformat())
    later = today() + timedelta(days=30)
    v2 = make_published(paula, peter, quote_chain("15"), effective_from=later.isoformat())
    assert v2["scheduled"] and not v2["in_force"]

    now = paula.get(f"{API}/quote/in-force")
    assert now.status_code == 200 and now.json()["version"] == 1
    then = paula.get(f"{API}/quote/in-force", params={"as_of": later.isoformat()})
    assert then.json()["version"] == 2
    before = paula.get(f"{API}/quote/in-force", params={"as_of": "2001-01-01"})
    assert before.status_code == 404
    assert before.json()["detail"] == "no published quote policy is in force on 2001-01-01"
    kind = paula.get(f"{API}/quote").json()
    assert kind["in_force_version"] == 1
    assert [(v["version"], v["in_force"], v["scheduled"]) for v in kind["versions"]] == [(2, False, True),
                                                                                         (1, True, False)]


def test_retire_a_published_version_and_the_previous_one_is_in_force_again(engine, paula, peter):
    make_published(paula, peter, quote_chain())
    make_published(paula, peter, quote_chain("15"))
    assert paula.get(f"{API}/quote/in-force").json()["version"] == 2
    retired = peter.post(f"{API}/quote/2/retire")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    assert paula.get(f"{API}/quote/in-force").json()["version"] == 1
    assert peter.post(f"{API}/quote/2/retire").status_code == 409
    paula.post(f"{API}/quote/drafts", json={"copy_of": 1})
    assert paula.post(f"{API}/quote/3/retire").status_code == 409
    event = [e for e in audit_actions(engine, "quote:v2") if e[1] == "policy_retire"]
    assert event == [("peter.designer", "policy_retire", "")]


def test_discard_a_draft_but_never_a_published_version(engine, paula, peter):
    make_published(paula, peter, quote_chain())
    paula.post(f"{API}/quote/drafts", json={"copy_of": 1})
    assert paula.delete(f"{API}/quote/2").status_code == 204
    assert stored(engine, "quote", 2) is None
    refused = paula.delete(f"{API}/quote/1")
    assert refused.status_code == 409 and "only drafts can be discarded" in refused.json()["detail"]
    assert stored(engine, "quote", 1) is not None


def test_unknown_versions_and_kinds(paula):
    assert paula.get(f"{API}/quote/7").status_code == 404
    assert paula.get(f"{API}/quote/7").json()["detail"] == "no quote policy version 7"
    assert paula.get(f"{API}/invoice/1").status_code == 422
    assert paula.post(f"{API}/quote/7/publish").status_code == 404


# ------------------------------------------------------------------------------------------- diff and simulation


def test_diff_of_a_draft_against_the_version_in_force(paula, peter):
    make_published(paula, peter, quote_chain())
    draft = quote_chain("15")
    draft["rules"].append(rule("big", [("amount", ">", "50000"), ("discount_percent", "<=", "15")], "CFO big",
                               ["cfo"]))
    paula.post(f"{API}/quote/drafts", json={"body": draft})
    answer = paula.get(f"{API}/quote/2/diff")
    assert answer.status_code == 200
    d = answer.json()
    assert (d["from_version"], d["to_version"], d["identical"]) == (1, 2, False)
    rules = {r["rule_id"]: r for r in d["rules"]}
    assert [c["text"] for c in rules["disc-manager"]["changes"]] == ["changes discount % > 10 → discount % > 15"]
    assert rules["big"]["status"] == "added" and rules["disc-cfo"]["status"] == "unchanged"
    assert d["summary"] == ["1 rule added", "1 rule changed"]
    against_self = paula.get(f"{API}/quote/2/diff", params={"against": 2}).json()
    assert against_self["identical"]
    unsaved = paula.post(f"{API}/quote/diff", json={"body": quote_chain()})
    assert unsaved.status_code == 200 and unsaved.json()["identical"]


def test_simulation_of_a_draft_against_recent_requests(engine, paula, peter):
    make_published(paula, peter, quote_chain())
    with Session(engine) as session, session.begin():
        add_request(session, 1, discount="12")
        add_request(session, 2, discount="25")
        add_request(session, 3, discount="3")
    paula.post(f"{API}/quote/drafts", json={"body": quote_chain("15")})
    sim = paula.get(f"{API}/quote/2/simulation", params={"limit": 50})
    assert sim.status_code == 200, sim.text
    data = sim.json()
    assert data["totals"]["requests"] == 3 and data["totals"]["differs"] == 1
    changed = [r for r in data["requests"] if r["differs"]]
    assert [(r["request_key"], r["change"]) for r in changed] == [("quote:R-00001", "no_longer_needs_approval")]
    assert changed[0]["then"]["steps"][0]["rule_ids"] == ["disc-manager"] and changed[0]["now"]["steps"] == []
    assert paula.get(f"{API}/quote/2/simulation", params={"baseline": "nonsense"}).status_code == 422

    unsaved = paula.post(f"{API}/simulate", json={"body": quote_chain("30"), "limit": 2})
    assert unsaved.status_code == 200
    assert [r["request_key"] for r in unsaved.json()["requests"]] == ["quote:R-00003", "quote:R-00002"]
    assert paula.post(f"{API}/simulate", json={"body": {"kind": "quote", "hit_policy": "FIRST", "rules": []}}
                      ).status_code == 422


# ------------------------------------------------------------------------------------------- export / import


def test_export_and_import_round_trip(engine, paula, peter, as_user):
    make_published(paula, peter, po_tiers())
    exported = paula.get(f"{API}/purchase_order/1/export")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == 'attachment; filename="policy-purchase_order-v1.json"'
    document = exported.json()
    imported = peter.post(f"{API}/import", json=document)
    assert imported.status_code == 201, imported.text
    assert (imported.json()["version"], imported.json()["status"], imported.json()["authored_by"]) == (
        2, "draft", "peter.designer")
    assert imported.json()["body_sha256"] == stored(engine, "purchase_order", 1).body_sha256
    assert imported.json()["note"] == "imported from purchase_order v1"
    assert [a for _, a, _ in audit_actions(engine, "purchase_order:v2")] == ["policy_import"]

    document["body"]["rules"][0]["step"]["sla"]["expire_action"] = "escalate forever"
    broken = peter.post(f"{API}/import", json=document)
    assert broken.status_code == 422
    assert [p["where"] for p in broken.json()["problems"]] == ["body.rules[0].step.sla.expire_action"]
    assert stored(engine, "purchase_order", 3) is None
    assert as_user("sam.sales").post(f"{API}/import", json=po_tiers()).status_code == 403
