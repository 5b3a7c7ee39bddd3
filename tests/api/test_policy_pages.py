"""The policy designer pages: they render for whoever is logged in, the decision table reads like the rules, the
structured editor round-trips through a real form post (with its CSRF token), problems land next to the rule and
field they concern, publishing keeps four eyes, and the simulation and import pages work."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.approval_policies import body_from_json, create_draft, publish
from models.approvals import ApprovalPolicy, PolicyStatus
from models.records import AuditEvent
from tests.policy_world import (  # noqa: F401
    add_request,
    as_user,
    browser,
    csrf_of,
    form_fields,
    po_tiers,
    policy_app,
    quote_chain,
)


def seed(engine, *bodies: dict, drafts: tuple[dict, ...] = ()) -> None:
    """Publish `bodies` (written by paula, published by peter) and add `drafts` by paula."""
    with Session(engine) as session, session.begin():
        for body in bodies:
            draft = create_draft(session, body_from_json(body), author="paula.designer", note="seeded")
            publish(session, draft, publisher="peter.designer")
        for body in drafts:
            create_draft(session, body_from_json(body), author="paula.designer", note="work in progress")


def stored(engine, kind: str, version: int) -> ApprovalPolicy | None:
    with Session(engine) as session:
        return session.scalars(select(ApprovalPolicy).where(ApprovalPolicy.kind == kind,
                                                            ApprovalPolicy.version == version)).first()


def flashes(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", m).strip() for m in re.findall(r'<div class="flash flash-\w+" role="\w+">(.*?)</div>',
                                                                html, re.S)]


def section(html: str, element_id: str) -> str:
    """The HTML of the element with this id, up to the next sibling of the same kind (good enough for a <li>)."""
    start = html.index(f'id="{element_id}"')
    end = html.find('<li class="rule-card', start + 1)
    return html[start:end if end != -1 else len(html)]


# ------------------------------------------------------------------------------------------- reading


def test_anonymous_visitors_go_to_the_login_page(policy_app):
    from fastapi.testclient import TestClient

    with TestClient(policy_app) as client:
        answer = client.get("/policies/quote/1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fpolicies%2Fquote%2F1"


def test_the_list_shows_kinds_versions_status_and_the_version_in_force(engine, browser):
    seed(engine, quote_chain(), quote_chain("15"), drafts=(quote_chain("18"),))
    page = browser("sam.sales").get("/policies")
    assert page.status_code == 200
    html = page.text
    for label in ("Quotes", "Sales order credit holds", "Purchase orders", "Vendor bill exceptions",
                  "Customer returns", "Stock adjustments"):
        assert f">{label}</h2>" in html
    quotes = html[html.index('id="kind-quote"'):html.index('id="kind-credit_hold"')]
    assert "version 2 in force today" in quotes
    rows = re.findall(r'<tr class="([^"]*)">\s*<td><a class="strong" href="/policies/quote/(\d)">', quotes)
    assert rows == [("", "3"), ("is-selected", "2"), ("", "1")]
    assert quotes.count("Superseded") == 1 and quotes.count("● In force") == 1 and "Draft" in quotes
    purchase = html[html.index('id="kind-purchase_order"'):html.index('id="kind-vendor_bill_exception"')]
    assert "No policy in force" in purchase
    # a reader gets no designer buttons
    assert "Start from scratch" not in html and 'action="/policies/import"' not in html
    designer_html = browser("paula.designer").get("/policies").text
    assert 'href="/policies/quote/new"' in designer_html and 'action="/policies/import"' in designer_html
    assert 'action="/policies/quote/2/copy"' in designer_html


def test_a_published_version_reads_as_a_decision_table_and_cannot_be_edited(engine, browser):
    seed(engine, quote_chain(), po_tiers())
    html = browser("peter.designer").get("/policies/quote/1").text
    assert "Rule order: every rule whose conditions all hold adds its step" in html
    table = html[html.index('class="data decision-table"'):html.index("</table>", html.index("decision-table"))]
    headers = re.findall(r'<th scope="col"[^>]*>([^<]+)</th>', table)
    assert headers == ["#", "Rule", "discount %", "Step", "Approvers", "Deadlines", "Delegable"]
    assert "&gt; 10" in table and "&gt; 20" in table and "CFO approval" in table
    assert "remind after 24 h; escalate after 2 days to cfo; expire after 5 days: reject" in table
    assert 'name="r0.rule_id"' not in html  # no editor
    assert 'action="/policies/quote/1/retire"' in html and 'action="/policies/quote/1/publish"' not in html
    assert "Published and retired versions never change" in html
    first = browser("sam.sales").get("/policies/purchase_order/1").text
    assert "First match: the rules are checked from the top" in first
    assert "amount" in first and "≤ 25,000" in first


def test_a_draft_shows_the_editor_to_designers_and_the_diff_to_everyone(engine, browser):
    draft = quote_chain("15")
    draft["rules"][1]["step"]["candidate_groups"] = ["cfo", "finance"]
    seed(engine, quote_chain(), drafts=(draft,))
    html = browser("peter.designer").get("/policies/quote/2").text
    assert 'name="r0.rule_id" value="disc-manager"' in html
    assert 'name="r0.c0.value" value="15"' in html
    assert re.search(r'name="r1.groups" value="finance" checked', html)
    assert "Changes from version 1" in html
    assert "changes discount % &gt; 10 → discount % &gt; 15" in html
    assert "adds candidate group finance" in html
    assert 'data-testid="publish"' in html  # peter did not write it
    reader = browser("sam.sales").get("/policies/quote/2").text
    assert 'name="r0.rule_id"' not in reader and 'data-testid="publish"' not in reader
    assert "A process designer publishes drafts." in reader
    author = browser("paula.designer").get("/policies/quote/2").text
    assert 'data-testid="publish"' not in author
    assert "You wrote this version last, so another process designer must publish it." in author


def test_unknown_versions_are_a_404_page(engine, browser):
    client = browser("sam.sales")
    assert client.get("/policies/quote/9").status_code == 404
    assert client.get("/policies/invoice/1").status_code == 404
    assert client.get("/policies/quote/abc").status_code == 404


# ------------------------------------------------------------------------------------------- editing


def test_saving_the_editor_form_changes_the_draft(engine, browser):
    seed(engine, quote_chain(), drafts=(quote_chain(),))
    client = browser("peter.designer")
    form = form_fields(client.get("/policies/quote/2").text, "/policies/quote/2")
    assert form["csrf_token"][0] and form["hit_policy"] == ["RULE_ORDER"]
    form["r0.c0.value"] = ["15"]
    form["r1.remind"] = ["8"]
    form["r1.groups"] = ["cfo", "finance"]
    form["note"] = ["manager from 15 %"]
    saved = client.post("/policies/quote/2", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/policies/quote/2"
    policy = stored(engine, "quote", 2)
    body = body_from_json(policy.body)
    assert body.rules[0].conditions[0].value == "15"
    assert body.rules[1].step.candidate_groups == ("cfo", "finance")
    assert body.rules[1].step.sla.remind_after_hours == 8
    assert (policy.note, policy.authored_by) == ("manager from 15 %", "peter.designer")
    assert len(body.rules) == 2  # the spare rule and spare conditions were ignored
    shown = client.get("/policies/quote/2").text
    assert "Version 2 saved." in " ".join(flashes(shown))
    with Session(engine) as session:
        assert session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == "quote:v2")).all() == [
            "policy_update"]


def test_the_form_needs_its_csrf_token_and_a_designer(engine, browser):
    seed(engine, drafts=(quote_chain(),))
    client = browser("peter.designer")
    form = form_fields(client.get("/policies/quote/1").text, "/policies/quote/1")
    form["r0.c0.value"] = ["50"]
    form["csrf_token"] = ["forged"]
    refused = client.post("/policies/quote/1", data=form, follow_redirects=False)
    assert refused.status_code == 403
    del form["csrf_token"]
    assert client.post("/policies/quote/1", data=form, follow_redirects=False).status_code == 403
    sam = browser("sam.sales")
    form["csrf_token"] = [csrf_of(sam.get("/policies").text)]
    assert sam.post("/policies/quote/1", data=form, follow_redirects=False).status_code == 403
    assert stored(engine, "quote", 1).body["rules"][0]["conditions"][0]["value"] == "10"


def test_problems_are_shown_next_to_the_rule_and_field_and_nothing_is_saved(engine, browser):
    seed(engine, drafts=(quote_chain(),))
    client = browser("peter.designer")
    before = stored(engine, "quote", 1).body_sha256
    form = form_fields(client.get("/policies/quote/1").text, "/policies/quote/1")
    form["r1.remind"] = ["abc"]
    form["r1.groups"] = []
    form["r0.c0.op"] = ["in"]
    form["r0.c0.value"] = ["10"]
    answer = client.post("/policies/quote/1", data=form, follow_redirects=False)
    assert answer.status_code == 422
    html = answer.text
    assert "Not saved: 3 problems to fix." in html
    assert '<a href="#rule-1">Rule disc-cfo</a>: a step needs at least one candidate group or user' in html
    rule1 = section(html, "rule-1")
    assert "has-problems" in html[html.rindex("<li", 0, html.index('id="rule-1"')):html.index('id="rule-1"')]
    assert re.search(r'name="r1.remind" value="abc"[^>]*aria-invalid="true" aria-describedby="err-r1-remind"', rule1)
    assert '<p class="field-error" id="err-r1-remind">&#39;abc&#39; is not a whole number of hours</p>' in rule1
    assert "a step needs at least one candidate group or user" in rule1
    rule0 = section(html, "rule-0")
    assert re.search(r'name="r0.c0.op"[^>]*aria-invalid="true"', rule0)
    assert "&#39;in&#39; does not apply to the number discount_percent" in rule0
    assert "a step needs" not in rule0
    assert stored(engine, "quote", 1).body_sha256 == before


def test_add_remove_and_reorder_rules_through_the_form(engine, browser):
    seed(engine, drafts=(quote_chain(),))
    client = browser("peter.designer")
    html = client.get("/policies/quote/1").text
    form = form_fields(html, "/policies/quote/1")
    assert 'id="rule-2"' in html and "is-spare" in section(html, "rule-2")  # the spare rule
    form.update({
        "r2.rule_id": ["margin"], "r2.position": ["0"], "r2.step_name": ["Margin check"],
        "r2.groups": ["sales-manager"], "r2.c0.fact": ["margin_percent"], "r2.c0.op": ["<"],
        "r2.c0.value": ["12"], "r2.c1.fact": ["category"], "r2.c1.op": ["in"], "r2.c1.value": ["cables, lighting"],
        "r2.remind": ["24"], "r2.escalate": [""], "r2.expire": ["72"], "r2.expire_action": ["approve"],
        "r0.remove": ["1"],
    })
    form.pop("r2.delegable", None)
    saved = client.post("/policies/quote/1", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    body = body_from_json(stored(engine, "quote", 1).body)
    assert [r.rule_id for r in body.rules] == ["margin", "disc-cfo"]
    margin = body.rules[0]
    assert [(c.fact, c.op, c.value) for c in margin.conditions] == [
        ("margin_percent", "<", "12"), ("category", "in", ("cables", "lighting"))]
    assert (margin.step.sla.escalate_after_hours, margin.step.sla.expire_action.value, margin.step.delegable) == (
        None, "approve", False)


def test_a_new_policy_from_scratch(engine, browser):
    client = browser("paula.designer")
    page = client.get("/policies/purchase_order/new")
    assert page.status_code == 200 and "New purchase orders policy" in page.text
    form = form_fields(page.text, "/policies/purchase_order/new")
    form.update({"hit_policy": ["FIRST"], "r0.rule_id": ["po-big"], "r0.step_name": ["CFO"], "r0.groups": ["cfo"],
                 "r0.c0.fact": ["amount"], "r0.c0.op": [">"], "r0.c0.value": ["25000"], "r0.escalate": [""],
                 "effective_from": ["2027-01-01"]})
    created = client.post("/policies/purchase_order/new", data=form, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"] == "/policies/purchase_order/1"
    policy = stored(engine, "purchase_order", 1)
    assert policy.status == PolicyStatus.draft and policy.authored_by == "paula.designer"
    assert str(policy.effective_from) == "2027-01-01"
    assert [r["rule_id"] for r in policy.body["rules"]] == ["po-big"]

    form["r0.c0.value"] = ["a lot"]
    form["effective_from"] = ["next week"]
    refused = client.post("/policies/purchase_order/new", data=form, follow_redirects=False)
    assert refused.status_code == 422
    assert "&#39;a lot&#39; is not a number" in refused.text and "is not a date (YYYY-MM-DD)" in refused.text
    assert 'value="a lot"' in refused.text  # what was typed comes back
    assert stored(engine, "purchase_order", 2) is None
    assert browser("sam.sales").get("/policies/purchase_order/new").status_code == 403


# ------------------------------------------------------------------------------------------- publish, retire, copy


def test_publish_from_the_page_keeps_four_eyes(engine, browser):
    seed(engine, quote_chain(), drafts=(quote_chain("15"),))
    paula = browser("paula.designer")
    token = csrf_of(paula.get("/policies/quote/2").text)
    refused = paula.post("/policies/quote/2/publish", data={"csrf_token": token}, follow_redirects=False)
    assert refused.status_code == 303
    assert stored(engine, "quote", 2).status == PolicyStatus.draft
    assert any("cannot publish" in f and "four eyes" in f for f in flashes(paula.get("/policies/quote/2").text))

    peter = browser("peter.designer")
    token = csrf_of(peter.get("/policies/quote/2").text)
    done = peter.post("/policies/quote/2/publish", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert stored(engine, "quote", 2).status == PolicyStatus.published
    after = peter.get("/policies/quote/2").text
    assert "Version 2 published" in " ".join(flashes(after)) and "● In force" in after
    assert peter.post("/policies/quote/2/publish", data={}, follow_redirects=False).status_code == 403  # no token


def test_retire_copy_and_discard_from_the_page(engine, browser):
    seed(engine, quote_chain(), quote_chain("15"))
    peter = browser("peter.designer")
    token = csrf_of(peter.get("/policies/quote/2").text)
    assert peter.post("/policies/quote/2/retire", data={"csrf_token": token}).status_code == 200
    assert stored(engine, "quote", 2).status == PolicyStatus.retired
    copied = peter.post("/policies/quote/1/copy", data={"csrf_token": token}, follow_redirects=False)
    assert copied.headers["location"] == "/policies/quote/3#editor"
    assert stored(engine, "quote", 3).body == stored(engine, "quote", 1).body
    discarded = peter.post("/policies/quote/3/discard", data={"csrf_token": token}, follow_redirects=False)
    assert discarded.headers["location"] == "/policies#kind-quote"
    assert stored(engine, "quote", 3) is None
    peter.post("/policies/quote/1/discard", data={"csrf_token": token}, follow_redirects=False)
    assert stored(engine, "quote", 1) is not None  # published: refused
    assert "only drafts can be discarded" in " ".join(flashes(peter.get("/policies/quote/1").text))
    # a published version never changes, even when its form is posted by hand
    sha = stored(engine, "quote", 1).body_sha256
    edited = peter.post("/policies/quote/1", data={"csrf_token": token, "hit_policy": "FIRST", "r0.rule_id": "x"},
                        follow_redirects=False)
    assert edited.status_code == 303 and stored(engine, "quote", 1).body_sha256 == sha
    assert "only drafts can be edited" in " ".join(flashes(peter.get("/policies/quote/1").text))


# ------------------------------------------------------------------------------------------- simulation, import


def test_the_simulation_page_shows_which_requests_would_route_differently(engine, browser):
    seed(engine, quote_chain(), drafts=(quote_chain("15"),))
    with Session(engine) as session, session.begin():
        add_request(session, 1, discount="12")
        add_request(session, 2, discount="25")
        add_request(session, 3, discount="2")
    client = browser("sam.sales")
    html = client.get("/policies/quote/2").text
    assert 'action="/policies/quote/2/simulation"' in html and 'data-testid="simulate"' in html
    page = client.get("/policies/quote/2/simulation", params={"limit": "200"})
    assert page.status_code == 200
    assert re.search(r'data-testid="differs">1<', page.text)
    assert 'data-request="quote:R-00001"' in page.text and "No longer needs approval" in page.text
    assert 'data-request="quote:R-00002"' not in page.text  # unchanged rows are hidden by default
    everything = client.get("/policies/quote/2/simulation", params={"show": "all"}).text
    assert all(f'data-request="quote:R-0000{n}"' in everything for n in (1, 2, 3))
    load = everything[everything.index("load-table"):]
    assert re.search(r"<td>sales-manager</td><td class=\"num\">2</td><td class=\"num\">1</td>", load)


def test_import_a_document_from_the_list_page(engine, browser, as_user):
    seed(engine, po_tiers())
    exported = as_user("sam.sales").get("/api/v1/policies/purchase_order/1/export").text
    client = browser("peter.designer")
    token = csrf_of(client.get("/policies").text)
    done = client.post("/policies/import", data={"csrf_token": token, "document": exported},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/policies/purchase_order/2"
    assert stored(engine, "purchase_order", 2).body == stored(engine, "purchase_order", 1).body
    upload = client.post("/policies/import", data={"csrf_token": token},
                         files={"file": ("policy.json", exported.encode(), "application/json")},
                         follow_redirects=False)
    assert upload.status_code == 303 and stored(engine, "purchase_order", 3) is not None
    broken = client.post("/policies/import", data={"csrf_token": token, "document": '{"kind": "quote"}'})
    assert broken.status_code == 422
    assert "The document was not imported" in broken.text and "<code>hit_policy</code>" in broken.text
    assert stored(engine, "quote", 1) is None
