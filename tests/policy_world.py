"""Shared pieces of the policy designer tests: the app with the policy routers, people who can log in, clients
by bearer token or by browser session, approval request rows, and policy bodies as JSON."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api.deps import token_sha256
from models.approvals import ApprovalRequest
from models.users import ApiToken, User
from tests.api.api_world import PASSWORD, _hash, make_app
from tests.approval_world import add_people

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def build_policy_app(engine, sqlite_url: str):
    """The real app over `engine` (people of tests/approval_world.py, all with PASSWORD)."""
    with Session(engine) as session, session.begin():
        add_people(session)
        for user in session.scalars(select(User)):
            user.password_hash = _hash(PASSWORD)
    app = make_app(engine, sqlite_url)
    return app


@pytest.fixture
def policy_app(engine, sqlite_url):
    return build_policy_app(engine, sqlite_url)


@pytest.fixture
def as_user(policy_app, engine) -> Iterator[Callable[[str], TestClient]]:
    """A client authenticated by a bearer token made in the database (no password hashing per test)."""
    clients: list[TestClient] = []

    def _as(username: str) -> TestClient:
        token = "tf_" + secrets.token_urlsafe(24)
        with Session(engine) as session, session.begin():
            user = session.scalars(select(User).where(User.username == username)).one()
            session.add(ApiToken(user_id=user.id, name="test", token_sha256=token_sha256(token), prefix=token[:12]))
        client = TestClient(policy_app, headers={"Authorization": f"Bearer {token}"})
        clients.append(client)
        return client

    yield _as
    for c in clients:
        c.close()


@pytest.fixture
def browser(policy_app) -> Iterator[Callable[[str], TestClient]]:
    """A client logged in through the login form, like a browser: cookie session, no CSRF header (each form has
    to carry its token)."""
    clients: list[TestClient] = []

    def _login(username: str) -> TestClient:
        client = TestClient(policy_app)
        page = client.get("/login")
        token = CSRF_INPUT.search(page.text).group(1)
        done = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                           "next": "/"}, follow_redirects=False)
        assert done.status_code == 303, done.text
        clients.append(client)
        return client

    yield _login
    for c in clients:
        c.close()


def csrf_of(html: str) -> str:
    return CSRF_INPUT.search(html).group(1)


_T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def add_request(session: Session, n: int, *, kind: str = "quote", amount: str = "1000", discount: str = "0",
                margin: str = "30", segment: str = "contractor", category: str = "cables", branch: str = "NBG",
                requester: str = "sam.sales", policy_version: int | None = 1, created_at: datetime | None = None,
                facts: dict | None = None) -> ApprovalRequest:
    """An approval request row as the ApprovalChain's activities write it (facts as strings)."""
    key = f"{kind}:R-{n:05d}"
    row = ApprovalRequest(
        request_key=key, workflow_id=f"chain:{key}", kind=kind, document_ref=f"R-{n:05d}", title=f"Request {n}",
        requester=requester, branch=branch, amount=Decimal(amount),
        facts=facts if facts is not None else {
            "amount": amount, "discount_percent": discount, "margin_percent": margin, "customer_segment": segment,
            "category": category, "branch": branch, "requester": requester},
        policy_version=policy_version, created_at=created_at or (_T0 + timedelta(minutes=n)),
    )
    session.add(row)
    session.flush()
    return row


def sla(escalate_to: list[str] | None = None, remind=24, escalate=48, expire=120, action="reject") -> dict:
    return {"remind_after_hours": remind, "escalate_after_hours": escalate,
            "escalate_to_groups": escalate_to if escalate_to is not None else ["cfo"],
            "expire_after_hours": expire, "expire_action": action}


def rule(rule_id: str, conditions: list[tuple[str, str, object]], name: str, groups: list[str], *,
         users: list[str] | None = None, step_sla: dict | None = None, delegable: bool = True) -> dict:
    return {"rule_id": rule_id,
            "conditions": [{"fact": f, "op": op, "value": v} for f, op, v in conditions],
            "step": {"name": name, "candidate_groups": groups, "candidate_users": users or [],
                     "sla": step_sla or sla(), "delegable": delegable}}


def quote_chain(manager_over: str = "10", cfo_over: str = "20") -> dict:
    """RULE_ORDER: discount above `manager_over` → sales manager; above `cfo_over` → CFO as well."""
    return {"kind": "quote", "hit_policy": "RULE_ORDER", "quorum": None, "rules": [
        rule("disc-manager", [("discount_percent", ">", manager_over)], "Sales manager approval", ["sales-manager"]),
        rule("disc-cfo", [("discount_percent", ">", cfo_over)], "CFO approval", ["cfo"],
             step_sla=sla(["admin"])),
    ]}


def po_tiers() -> dict:
    """FIRST: amount tiers."""
    return {"kind": "purchase_order", "hit_policy": "FIRST", "quorum": None, "rules": [
        rule("po-small", [("amount", ">", "5000"), ("amount", "<=", "25000")], "Purchasing manager",
             ["purchasing-manager"]),
        rule("po-large", [("amount", ">", "25000")], "CFO", ["cfo"], step_sla=sla(["admin"])),
    ]}


class _FormReader(HTMLParser):
    """Collects what a browser would submit for one form (by its action): text inputs, checked boxes, the
    selected option of each select, textareas."""

    def __init__(self, action: str):
        super().__init__(convert_charrefs=True)
        self.action = action
        self.inside = False
        self.found = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("action") == self.action and not self.found:
            self.inside = self.found = True
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value") or "on"))
            elif kind not in ("file", "submit", "button"):
                self.fields.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self._select, self._options = name, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if not self.inside:
            return
        if tag == "select" and self._select is not None:
            chosen = [v for v, sel in self._options if sel] or [v for v, _ in self._options[:1]]
            if chosen:
                self.fields.append((self._select, chosen[0]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text))
            self._textarea = None
        elif tag == "form":
            self.inside = False


def form_fields(html: str, action: str) -> dict[str, list[str]]:
    """The fields the form posting to `action` would send, as {name: [values]} (for TestClient `data=`)."""
    reader = _FormReader(action)
    reader.feed(html)
    assert reader.found, f"no form posting to {action}"
    out: dict[str, list[str]] = {}
    for name, value in reader.fields:
        out.setdefault(name, []).append(value)
    return out
