"""The task inbox: its queries against rows written straight into the database (views, counts, visibility,
filters, sorting, paging, saved views, pages, CSRF), and its actions end to end through a real Temporal dev
server and worker (claim, conflict, decide, segregation of duties, stale versions, bulk approve, 404 for those
who may not see a task, 503 when Temporal cannot be reached).

JSON calls authenticate with API tokens made in the database (no Argon2 per test); the page tests log in through
the login form, because CSRF applies to cookie sessions only.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from functools import lru_cache

import httpx
import pytest_asyncio
from sqlalchemy import select
from sqlmodel import Session

from api import inbox as inbox_api
from api.deps import token_sha256
from api.main import create_app
from config import Settings
from models.approvals import ApprovalRequest, HumanTask, SavedView, replace_candidates
from models.records import AuditEvent
from models.users import ApiToken, User, hash_password
from tests.approval_world import publish_policy, two_step_quote_policy
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.approval_rules import RequestFacts
from workflows.contracts import ApprovalChainInput, approval_id

PASSWORD = "inbox-test-password"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
NOW = datetime.now(UTC).replace(microsecond=0)

QUOTE_DETAILS = {
    "customer": {"name": "Elektro Nord GmbH", "code": "C-10042", "segment": "installer"},
    "lines": [
        {"sku": "CBL-NYM-3x1.5", "description": "NYM-J 3x1.5 mm² installation cable", "qty": "500", "uom": "m",
         "list_price": "1.20", "unit_price": "0.90", "discount_percent": "25", "net": "450.00",
         "margin_percent": "8.5"},
        {"sku": "SW-LS990-WS", "description": "LS 990 switch, white", "qty": "120", "uom": "pc",
         "list_price": "14.80", "unit_price": "11.10", "discount_percent": "25", "net": "1332.00",
         "margin_percent": "18.0"},
    ],
    "discount_percent": "25",
    "margin_percent": "14.2",
    "credit": {"limit": "50000.00", "open_receivables": "31250.00", "open_orders": "4100.00",
               "this_quote": "1782.00", "exposure": "37132.00", "available": "12868.00"},
}


# ------------------------------------------------------------------------------------------- app and clients


def build_app(engine, database_url: str, temporal_client=None, **settings):
    app = create_app(Settings(database_url=database_url, app_env="test", secret_key="inbox-test-secret-0123456789",
                              **settings))
    app.state.engine.dispose()
    app.state.engine = engine
    if temporal_client is not None:
        app.state.temporal_client = temporal_client
    return app


@lru_cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # Argon2: once per test run


def user_id(engine, username: str) -> int:
    with Session(engine) as s:
        return s.scalars(select(User.id).where(User.username == username)).one()


class Clients:
    """`clients.api("mia.manager")`: a JSON client with an API token; `await clients.browser("mia.manager")`: a
    client logged in through the form (cookie session), with `.csrf` holding its token."""

    def __init__(self, app, engine) -> None:
        self.app, self.engine = app, engine
        self.open: list[httpx.AsyncClient] = []

    def _client(self, **kw) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://testserver", **kw)
        self.open.append(client)
        return client

    def api(self, username: str) -> httpx.AsyncClient:
        token = "tf_" + secrets.token_urlsafe(24)
        with Session(self.engine) as s, s.begin():
            s.add(ApiToken(user_id=user_id(self.engine, username), name="test", token_sha256=token_sha256(token),
                           prefix=token[:12]))
        return self._client(headers={"Authorization": f"Bearer {token}"})

    async def browser(self, username: str) -> httpx.AsyncClient:
        with Session(self.engine) as s, s.begin():
            s.scalars(select(User).where(User.username == username)).one().password_hash = _password_hash()
        client = self._client()
        page = await client.get("/login")
        token = CSRF_INPUT.search(page.text).group(1)
        done = await client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                                 "next": "/inbox"})
        assert done.status_code == 303, done.text
        inbox_page = await client.get("/inbox")
        client.csrf = CSRF_INPUT.search(inbox_page.text).group(1)
        return client

    async def close(self) -> None:
        for c in self.open:
            await c.aclose()


@pytest_asyncio.fixture
async def clients(people_engine, sqlite_url) -> AsyncIterator[Clients]:
    """Clients of an app over the test people, with no Temporal (the query tests need none)."""
    app = build_app(people_engine, sqlite_url, temporal_address="127.0.0.1:9")
    c = Clients(app, people_engine)
    yield c
    await c.close()


@pytest_asyncio.fixture
async def live(temporal_env, worker, people_engine, sqlite_url) -> AsyncIterator[Clients]:
    """Clients of an app whose Temporal client is the test server's, with a worker running, and the two-step
    quote policy (sales manager, then the CFO above 20 % discount) published."""
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
    app = build_app(people_engine, sqlite_url, temporal_env.client)
    c = Clients(app, people_engine)
    c.task_queue = worker
    c.client = temporal_env.client
    yield c
    await c.close()


# ------------------------------------------------------------------------------------------- rows


def put_task(session: Session, key: str, *, status: str = "ready", groups=("sales-manager",), users=(),
             assignee: str | None = None, owner: str | None = None, delegation: str = "none",
             due_in_hours: float | None = 72, amount: str = "1000", kind: str = "quote", branch: str = "NBG",
             priority: int = 50, created_hours_ago: float = 1, completed_by: str | None = None,
             outcome: str | None = None, requester: str = "sam.sales", title: str | None = None,
             request_key: str | None = None, step_index: int = 0, comment: str = "") -> HumanTask:
    """A task row with its candidate rows, as activities/approvals.py save_task writes them."""
    request_key = request_key or key.split("/")[0]
    row = HumanTask(
        task_key=key, request_key=request_key, workflow_id=approval_id(request_key), step_index=step_index,
        step_name="CFO approval" if step_index else "Sales manager approval", kind=kind,
        title=title or f"Quote {request_key.split(':')[-1]} for Elektro Nord", document_ref=request_key.split(":")[-1],
        requester=requester, branch=branch, amount=D(amount), status=status, outcome=outcome, assignee=assignee,
        owner=owner, delegation_state=delegation, priority=priority,
        created_at=NOW - timedelta(hours=created_hours_ago),
        due_at=NOW + timedelta(hours=due_in_hours) if due_in_hours is not None else None,
        completed_by=completed_by, completed_at=NOW - timedelta(minutes=5) if completed_by else None,
        policy_kind=kind, policy_version=3, rule_ids=["discount>10"], candidate_groups=list(groups),
        candidate_users=list(users), comment=comment,
    )
    session.add(row)
    session.flush()
    replace_candidates(session, row)
    return row


def inbox_world(engine) -> None:
    """Tasks for the sales managers, the CFO and others, in every state the views tell apart."""
    with Session(engine) as s, s.begin():
        s.add(ApprovalRequest(request_key="quote:Q-1", workflow_id=approval_id("quote:Q-1"), kind="quote",
                              document_ref="Q-1", title="Quote Q-1 for Elektro Nord", requester="sam.sales",
                              branch="NBG", amount=D("1782.00"), details=QUOTE_DETAILS,
                              facts={"amount": "1782.00", "discount_percent": "25"}, policy_version=3))
        put_task(s, "quote:Q-1/step1/round1", due_in_hours=-2, amount="1782.00", priority=80,
                 created_hours_ago=30, comment="")                                      # overdue, unclaimed
        put_task(s, "quote:Q-2/step1/round1", due_in_hours=10, amount="5000", branch="MUC")  # at risk
        put_task(s, "quote:Q-3/step1/round1", status="reserved", assignee="mia.manager", due_in_hours=100,
                 amount="20000", created_hours_ago=50)                                  # mine
        put_task(s, "quote:Q-4/step1/round1", status="reserved", assignee="max.manager", due_in_hours=90,
                 amount="300")                                                          # claimed by max
        put_task(s, "quote:Q-5/step1/round1", status="reserved", owner="mia.manager", assignee="max.manager",
                 delegation="pending", due_in_hours=80, amount="7000")                  # delegated by mia
        put_task(s, "quote:Q-6/step1/round1", status="completed", outcome="approved", assignee="mia.manager",
                 completed_by="mia.manager", due_in_hours=-100, amount="900")           # done by mia
        put_task(s, "quote:Q-7/step2/round1", groups=("cfo",), step_index=1, due_in_hours=20,
                 amount="65000", request_key="quote:Q-7")                               # the CFO's
        put_task(s, "purchase_order:PO-1/step1/round1", groups=("purchasing-manager",), kind="purchase_order",
                 amount="12000", title="Purchase order PO-1 for Kabelwerk Süd")         # nobody here sees it
        put_task(s, "quote:Q-8/step1/round1", groups=(), users=("mia.manager",), due_in_hours=None,
                 amount="150", branch="HAM", priority=20, title="Quote Q-8, small order")  # mia by name


async def get_json(client: httpx.AsyncClient, url: str, code: int = 200):
    response = await client.get(url)
    assert response.status_code == code, response.text
    return response.json()


def keys(page: dict) -> list[str]:
    return [i["task_key"] for i in page["items"]]


# ------------------------------------------------------------------------------------------- queries


async def test_views_counts_and_visibility(clients):
    inbox_world(clients.engine)
    mia = clients.api("mia.manager")

    mine = await get_json(mia, "/api/v1/tasks")
    assert mine["view"] == "my_tasks" and keys(mine) == ["quote:Q-3/step1/round1"]
    assert mine["counts"] == {"my_tasks": 1, "group_unclaimed": 3, "delegated_by_me": 1, "overdue_and_at_risk": 2,
                              "completed_by_me": 1, "all_open": 6}
    unclaimed = await get_json(mia, "/api/v1/tasks?view=group_unclaimed")
    # Oldest deadline first, tasks without a deadline last.
    assert keys(unclaimed) == ["quote:Q-1/step1/round1", "quote:Q-2/step1/round1", "quote:Q-8/step1/round1"]
    assert [i["sla"] for i in unclaimed["items"]] == ["overdue", "at_risk", None]
    assert keys(await get_json(mia, "/api/v1/tasks?view=delegated_by_me")) == ["quote:Q-5/step1/round1"]
    assert keys(await get_json(mia, "/api/v1/tasks?view=overdue_and_at_risk")) == [
        "quote:Q-1/step1/round1", "quote:Q-2/step1/round1"]
    assert keys(await get_json(mia, "/api/v1/tasks?view=completed_by_me")) == ["quote:Q-6/step1/round1"]
    everything = await get_json(mia, "/api/v1/tasks?view=all_open&limit=100")
    assert "quote:Q-7/step2/round1" not in keys(everything)  # the CFO's step
    assert "purchase_order:PO-1/step1/round1" not in keys(everything)
    assert "quote:Q-4/step1/round1" in keys(everything)  # claimed by a colleague: visible, not actionable

    # Each count is exactly what its view lists.
    for view, count in mine["counts"].items():
        assert (await get_json(mia, f"/api/v1/tasks?view={view}&limit=200"))["total"] == count, view

    carl = clients.api("carl.cfo")
    carl_counts = (await get_json(carl, "/api/v1/tasks"))["counts"]
    assert carl_counts["group_unclaimed"] == 1 and carl_counts["all_open"] == 1
    assert keys(await get_json(carl, "/api/v1/tasks?view=group_unclaimed")) == ["quote:Q-7/step2/round1"]

    # Admins see every open task, but "my groups" stays their own groups.
    ada = clients.api("ada.admin")
    ada_counts = (await get_json(ada, "/api/v1/tasks"))["counts"]
    assert ada_counts["all_open"] == 8 and ada_counts["group_unclaimed"] == 0
    assert ada_counts["overdue_and_at_risk"] == 3


async def test_filters_sorting_and_paging(clients):
    inbox_world(clients.engine)
    mia = clients.api("mia.manager")
    base = "/api/v1/tasks?view=all_open&limit=100"

    assert keys(await get_json(mia, base + "&branch=MUC")) == ["quote:Q-2/step1/round1"]
    assert set(keys(await get_json(mia, base + "&amount_min=5000&amount_max=20000"))) == {
        "quote:Q-2/step1/round1", "quote:Q-3/step1/round1", "quote:Q-5/step1/round1"}
    assert keys(await get_json(mia, base + "&q=small order")) == ["quote:Q-8/step1/round1"]
    assert keys(await get_json(mia, base + "&q=Q-4")) == ["quote:Q-4/step1/round1"]
    assert keys(await get_json(mia, base + "&kind=purchase_order")) == []
    assert keys(await get_json(mia, base + "&status=reserved&sort=-amount")) == [
        "quote:Q-3/step1/round1", "quote:Q-5/step1/round1", "quote:Q-4/step1/round1"]
    tomorrow = (NOW + timedelta(hours=24)).isoformat()
    assert keys(await get_json(mia, base + f"&due_before={tomorrow.replace('+', '%2B')}")) == [
        "quote:Q-1/step1/round1", "quote:Q-2/step1/round1"]
    later = (NOW + timedelta(hours=85)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(keys(await get_json(mia, base + f"&due_after={later}"))) == {
        "quote:Q-3/step1/round1", "quote:Q-4/step1/round1"}
    await get_json(mia, base + "&due_before=next-week", 422)
    await get_json(mia, base + "&sort=colour", 422)

    by_priority = await get_json(mia, base + "&sort=priority")  # most urgent first
    assert by_priority["items"][0]["task_key"] == "quote:Q-1/step1/round1"
    assert by_priority["items"][-1]["task_key"] == "quote:Q-8/step1/round1"
    oldest = await get_json(mia, base + "&sort=created")
    assert keys(oldest)[0] == "quote:Q-3/step1/round1"

    first = await get_json(mia, "/api/v1/tasks?view=all_open&limit=4&sort=amount")
    second = await get_json(mia, "/api/v1/tasks?view=all_open&limit=4&offset=4&sort=amount")
    assert first["total"] == second["total"] == 6 and len(first["items"]) == 4 and len(second["items"]) == 2
    assert not set(keys(first)) & set(keys(second))
    amounts = [D(i["amount"]) for i in first["items"] + second["items"]]
    assert amounts == sorted(amounts)
    beyond = await get_json(mia, "/api/v1/tasks?view=all_open&limit=4&offset=40")
    assert beyond["offset"] == 4 and len(beyond["items"]) == 2  # past the end: the last page


async def test_task_detail_and_404_for_those_who_may_not_see_it(clients):
    inbox_world(clients.engine)
    with Session(clients.engine) as s, s.begin():
        put_task(s, "quote:Q-1/step2/round1", groups=("cfo",), step_index=1, request_key="quote:Q-1")
        s.add(AuditEvent(actor="sam.sales", action="approval.requested", entity_kind="approval_request",
                         entity_id="quote:Q-1"))
    mia = clients.api("mia.manager")
    detail = await get_json(mia, "/api/v1/tasks/quote:Q-1/step1/round1")
    assert detail["request"]["details"]["credit"]["exposure"] == "37132.00"
    assert detail["why"] == "quote policy v3, rule discount>10; candidates: group sales-manager"
    assert [c["task_key"] for c in detail["chain"]] == ["quote:Q-1/step1/round1", "quote:Q-1/step2/round1"]
    assert [h["action"] for h in detail["history"]] == ["approval.requested"]
    assert detail["allowed"]["claim"] and detail["allowed"]["decide"] and not detail["allowed"]["release"]
    # The requester sees no decision buttons, and why.
    with Session(clients.engine) as s, s.begin():
        put_task(s, "quote:Q-9/step1/round1", requester="mia.manager")
    own = await get_json(mia, "/api/v1/tasks/quote:Q-9/step1/round1")
    assert not own["allowed"]["decide"] and "segregation of duties" in own["allowed"]["why_not"]

    carl = clients.api("carl.cfo")
    missing = await carl.get("/api/v1/tasks/quote:Q-1/step1/round1")
    assert missing.status_code == 404 and missing.json() == {"detail": "task quote:Q-1/step1/round1 not found"}
    assert (await carl.get("/api/v1/tasks/quote:NOPE/step1/round1")).status_code == 404
    # An action on a task one cannot see is refused the same way before Temporal is asked, and audited.
    refused = await carl.post("/api/v1/tasks/quote:Q-1/step1/round1/claim")
    assert refused.status_code == 404 and refused.headers[inbox_api.REFUSAL_HEADER] == "NotVisible"
    with Session(clients.engine) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "task.claim.refused")).one()
        assert (event.actor, event.entity_id) == ("carl.cfo", "quote:Q-1/step1/round1")
        assert event.reason.startswith("NotVisible")
    # A closed task: 409 at once, no engine needed.
    closed = await mia.post("/api/v1/tasks/quote:Q-6/step1/round1/decision", json={"outcome": "approved"})
    assert closed.status_code == 409 and "completed, not open" in closed.json()["detail"]


async def test_saved_views_shared_with_a_group(clients):
    inbox_world(clients.engine)
    mia, max_, carl = clients.api("mia.manager"), clients.api("max.manager"), clients.api("carl.cfo")
    created = await mia.post("/api/v1/inbox-views", json={
        "name": "Munich, big", "view": "all_open", "sort": "-amount",
        "filters": {"branch": "MUC", "amount_min": "1000"}, "shared_with_group": "sales-manager"})
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["filters"] == {"branch": "MUC", "amount_min": "1000"} and view["mine"]
    private = await mia.post("/api/v1/inbox-views", json={"name": "Mine only", "view": "my_tasks"})
    assert private.status_code == 201

    seen_by_max = await get_json(max_, "/api/v1/inbox-views")
    assert [v["name"] for v in seen_by_max] == ["Munich, big"] and not seen_by_max[0]["mine"]
    assert await get_json(carl, "/api/v1/inbox-views") == []
    applied = await get_json(max_, f"/api/v1/tasks?saved_view={view['id']}")
    assert applied["view"] == "all_open" and applied["sort"] == "-amount"
    assert keys(applied) == ["quote:Q-2/step1/round1"]
    await get_json(carl, f"/api/v1/tasks?saved_view={view['id']}", 404)

    refused = await carl.post("/api/v1/inbox-views", json={"name": "x", "shared_with_group": "sales-manager"})
    assert refused.status_code == 422 and "group you belong to" in refused.text
    assert (await max_.delete(f"/api/v1/inbox-views/{view['id']}")).status_code == 403
    assert (await carl.delete(f"/api/v1/inbox-views/{view['id']}")).status_code == 404
    assert (await mia.delete(f"/api/v1/inbox-views/{view['id']}")).status_code == 200
    with Session(clients.engine) as s:
        assert [v.name for v in s.scalars(select(SavedView))] == ["Mine only"]


async def test_inbox_pages_show_views_counts_sla_and_the_request(clients):
    inbox_world(clients.engine)
    mia = await clients.browser("mia.manager")
    page = await mia.get("/inbox?view=group_unclaimed")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="count-group_unclaimed">3<' in html and 'data-testid="count-my_tasks">1<' in html
    assert re.search(r'class="task-row sla-overdue" data-task-key="quote:Q-1/step1/round1"', html)
    assert re.search(r'class="task-row sla-at_risk" data-task-key="quote:Q-2/step1/round1"', html)
    assert 'formaction="/inbox/quote:Q-1/step1/round1/claim"' in html
    assert 'action="/inbox/bulk"' in html and 'form="bulk-form"' in html
    assert "Purchase order PO-1" not in html

    sorted_page = await mia.get("/inbox?view=all_open&sort=-amount&branch=NBG")
    rows = re.findall(r'data-task-key="([^"]+)"', sorted_page.text)
    assert rows == ["quote:Q-3/step1/round1", "quote:Q-5/step1/round1", "quote:Q-1/step1/round1",
                    "quote:Q-4/step1/round1"]
    assert (await mia.get("/inbox?view=nonsense&page=abc&amount_min=lots")).status_code == 200

    task = await mia.get("/inbox/quote:Q-1/step1/round1")
    assert task.status_code == 200
    body = task.text
    for expected in ("NYM-J 3x1.5 mm² installation cable", "1,332.00", "Customer credit exposure", "37,132.00",
                     "Why you see this", "discount&gt;10", "v3", "member of sales-manager", "The chain so far"):
        assert expected in body, expected
    assert body.count('name="csrf_token"') >= 3 and 'name="expected_version" value="1"' in body
    assert (await mia.get("/inbox/purchase_order:PO-1/step1/round1")).status_code == 404
    assert (await mia.get("/inbox")).status_code == 200

    anonymous = clients._client()
    away = await anonymous.get("/inbox")
    assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")


async def test_html_posts_need_the_csrf_token(clients):
    inbox_world(clients.engine)
    mia = await clients.browser("mia.manager")
    for url, data in (("/inbox/quote:Q-1/step1/round1/claim", {}),
                      ("/inbox/quote:Q-1/step1/round1/approve", {"expected_version": "1"}),
                      ("/inbox/bulk", {"task_key": "quote:Q-1/step1/round1"}),
                      ("/inbox/views", {"name": "x"})):
        missing = await mia.post(url, data=data)
        assert missing.status_code == 403 and "CSRF" in missing.text, url
        wrong = await mia.post(url, data={**data, "csrf_token": "forged"})
        assert wrong.status_code == 403, url
    # JSON writes from a cookie session need it too (in the header).
    assert (await mia.post("/api/v1/tasks/quote:Q-1/step1/round1/claim")).status_code == 403
    with Session(clients.engine) as s:
        assert s.scalars(select(HumanTask.status).where(HumanTask.task_key == "quote:Q-1/step1/round1")).one() \
            == "ready"
        assert s.scalars(select(SavedView)).all() == []

    # With the token, a saved view is made and shown, and the page says so.
    saved = await mia.post("/inbox/views", data={"csrf_token": mia.csrf, "name": "Overdue NBG",
                                                 "view": "overdue_and_at_risk", "branch": "NBG"})
    assert saved.status_code == 303 and saved.headers["location"].startswith("/inbox?saved=")
    shown = await mia.get(saved.headers["location"])
    assert "Overdue NBG" in shown.text and "Saved the view" in shown.text
    assert re.findall(r'data-task-key="([^"]+)"', shown.text) == ["quote:Q-1/step1/round1"]


async def test_temporal_unreachable_is_a_503_and_no_refusal(clients):
    inbox_world(clients.engine)
    mia = clients.api("mia.manager")
    answer = await mia.post("/api/v1/tasks/quote:Q-1/step1/round1/claim")
    assert answer.status_code == 503 and "not reachable" in answer.json()["detail"]
    with Session(clients.engine) as s:
        assert s.scalars(select(AuditEvent).where(AuditEvent.action.like("%.refused"))).all() == []


# ------------------------------------------------------------------------------------------- end to end


async def start_quote(live: Clients, *, requester: str = "sam.sales", discount: str = "25") -> str:
    """Start an approval chain for a quote and wait for its first task row; returns the task key."""
    key = f"quote:Q-{uuid.uuid4().hex[:6].upper()}"
    request = ApprovalChainInput(
        request_key=key, kind="quote", document_ref=key.split(":")[1],
        title=f"Quote {key.split(':')[1]} for Elektro Nord",
        requester=requester, facts=RequestFacts(amount=D("1782.00"), discount_percent=D(discount), requester=requester),
        details=QUOTE_DETAILS, branch="NBG",
    )
    await live.client.start_workflow(ApprovalChainWorkflow.run, request, id=approval_id(key),
                                     task_queue=live.task_queue)
    return await wait_for_task(live.engine, f"{key}/step1/round1")


async def wait_for_task(engine, task_key: str, status: str = "ready", timeout: float = 15.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            with Session(engine) as s:
                found = s.scalars(select(HumanTask.status).where(HumanTask.task_key == task_key)).first()
            if found == status:
                return task_key
            await asyncio.sleep(0.05)


def task_row(engine, task_key: str) -> HumanTask:
    with Session(engine) as s:
        return s.scalars(select(HumanTask).where(HumanTask.task_key == task_key)).one()


def refusals(engine) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("%.refused")).order_by(AuditEvent.id)))


async def test_claim_conflict_decide_and_the_next_step_reaches_the_cfo(live):
    first = await start_quote(live)
    mia, max_, carl = live.api("mia.manager"), live.api("max.manager"), live.api("carl.cfo")

    claimed = await mia.post(f"/api/v1/tasks/{first}/claim", json={"expected_version": 1})
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["status"], claimed.json()["assignee"], claimed.json()["version"]) == \
        ("reserved", "mia.manager", 2)
    assert (task_row(live.engine, first).status, task_row(live.engine, first).assignee) == ("reserved", "mia.manager")
    assert keys(await get_json(mia, "/api/v1/tasks")) == [first]  # read your writes

    conflict = await max_.post(f"/api/v1/tasks/{first}/claim")
    assert conflict.status_code == 409
    assert conflict.json()["detail"] == f"task {first} is already claimed by mia.manager"
    assert conflict.headers[inbox_api.REFUSAL_HEADER] == "TaskAlreadyClaimed"

    decided = await mia.post(f"/api/v1/tasks/{first}/decision",
                             json={"outcome": "approved", "comment": "margin holds", "expected_version": 2})
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["outcome"]) == ("completed", "approved")
    row = task_row(live.engine, first)
    assert (row.status, row.outcome, row.completed_by, row.comment) == ("completed", "approved", "mia.manager",
                                                                        "margin holds")
    assert keys(await get_json(mia, "/api/v1/tasks")) == []
    assert first in keys(await get_json(mia, "/api/v1/tasks?view=completed_by_me"))

    second = await wait_for_task(live.engine, first.replace("step1", "step2"))
    assert keys(await get_json(carl, "/api/v1/tasks?view=group_unclaimed")) == [second]
    detail = await get_json(carl, f"/api/v1/tasks/{second}")
    assert [(c["step_name"], c["outcome"]) for c in detail["chain"]] == [
        ("Sales manager approval", "approved"), ("CFO approval", None)]
    assert any(h["action"] == "task.approved" and h["actor"] == "mia.manager" for h in detail["history"])

    [refusal] = refusals(live.engine)
    assert (refusal.actor, refusal.action, refusal.entity_id) == ("max.manager", "task.claim.refused", first)
    assert refusal.reason.startswith("TaskAlreadyClaimed")


async def test_segregation_of_duties_stale_version_and_comment_required(live):
    # sue.sales asks, and is also a sales manager: she may not approve her own request.
    first = await start_quote(live, requester="sue.sales")
    sue, mia = live.api("sue.sales"), live.api("mia.manager")
    own = await sue.post(f"/api/v1/tasks/{first}/decision", json={"outcome": "approved"})
    assert own.status_code == 403 and own.headers[inbox_api.REFUSAL_HEADER] == "SegregationOfDuties"
    assert own.json()["detail"] == "sue.sales requested this approval and may not decide it"

    assert (await mia.post(f"/api/v1/tasks/{first}/claim")).status_code == 200
    stale = await mia.post(f"/api/v1/tasks/{first}/release", json={"expected_version": 1})
    assert stale.status_code == 409 and stale.headers[inbox_api.REFUSAL_HEADER] == "StaleVersion"
    assert "reload and try again" in stale.json()["detail"]
    reject = await mia.post(f"/api/v1/tasks/{first}/decision", json={"outcome": "rejected"})
    assert reject.status_code == 422 and reject.headers[inbox_api.REFUSAL_HEADER] == "CommentRequired"
    to_nobody = await mia.post(f"/api/v1/tasks/{first}/delegate", json={"to_user": "nobody.here"})
    assert to_nobody.status_code == 422 and "no active user" in to_nobody.json()["detail"]
    assert task_row(live.engine, first).status == "reserved"

    events = refusals(live.engine)
    assert [(e.actor, e.action, e.data["reason"]) for e in events] == [
        ("sue.sales", "task.approved.refused", "SegregationOfDuties"),
        ("mia.manager", "task.release.refused", "StaleVersion"),
        ("mia.manager", "task.rejected.refused", "CommentRequired"),
        ("mia.manager", "task.delegate.refused", "InvalidCommand"),
    ]
    assert all(e.entity_id == first and e.entity_kind == "human_task" for e in events)


async def test_bulk_approve_reports_each_task(live):
    by_sam = await start_quote(live, discount="15")  # one step only
    by_sue = await start_quote(live, requester="sue.sales", discount="15")
    claimed_by_mia = await start_quote(live, discount="15")
    mia, max_ = live.api("mia.manager"), live.api("max.manager")
    assert (await mia.post(f"/api/v1/tasks/{claimed_by_mia}/claim")).status_code == 200

    answer = await max_.post("/api/v1/tasks/bulk-decision", json={
        "task_keys": [by_sam, by_sue, claimed_by_mia, "quote:NOPE/step1/round1"], "comment": "fine"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["succeeded"], result["refused"]) == (2, 2)
    by_key = {r["task_key"]: r for r in result["results"]}
    assert by_key[by_sam]["ok"] and by_key[by_sam]["task"]["outcome"] == "approved"
    assert by_key[by_sue]["ok"]  # max did not request it
    assert (by_key[claimed_by_mia]["status_code"], by_key[claimed_by_mia]["reason"]) == (409, "TaskAlreadyClaimed")
    assert (by_key["quote:NOPE/step1/round1"]["status_code"], by_key["quote:NOPE/step1/round1"]["reason"]) == \
        (404, "NotVisible")
    assert [r["task_key"] for r in result["results"]] == [by_sam, by_sue, claimed_by_mia, "quote:NOPE/step1/round1"]
    assert task_row(live.engine, by_sam).outcome == "approved"
    assert task_row(live.engine, claimed_by_mia).status == "reserved"
    assert {e.entity_id for e in refusals(live.engine)} == {claimed_by_mia, "quote:NOPE/step1/round1"}


async def test_request_changes_then_the_requester_resubmits(live):
    first = await start_quote(live, discount="15")
    mia, sam, max_ = live.api("mia.manager"), live.api("sam.sales"), live.api("max.manager")
    request_key = first.split("/")[0]
    early = await sam.post(f"/api/v1/approvals/{request_key}/resubmit", json={"comment": "nothing asked yet"})
    assert early.status_code == 403 and early.headers[inbox_api.REFUSAL_HEADER] == "NotAllowed"

    asked = await mia.post(f"/api/v1/tasks/{first}/decision",
                           json={"outcome": "changes_requested", "comment": "Discount too deep on the cable"})
    assert asked.status_code == 200 and asked.json()["outcome"] == "changes_requested"
    await wait_for_changes_requested(live.engine, request_key)
    assert (await max_.post(f"/api/v1/approvals/{request_key}/resubmit", json={})).status_code == 404
    done = await sam.post(f"/api/v1/approvals/{request_key}/resubmit",
                          json={"comment": "Cable at 12 % now", "facts": {"discount_percent": "12"}})
    assert done.status_code == 200, done.text
    assert done.json() == {"request_key": request_key, "status": "resubmitted"}
    second_round = await wait_for_task(live.engine, f"{request_key}/step1/round2")
    assert second_round in keys(await get_json(max_, "/api/v1/tasks?view=group_unclaimed"))
    with Session(live.engine) as s:
        assert s.scalars(select(ApprovalRequest.facts).where(ApprovalRequest.request_key == request_key)).one()[
            "discount_percent"] == "12"
    assert [(e.actor, e.action) for e in refusals(live.engine)] == [
        ("sam.sales", "approval.resubmit.refused"), ("max.manager", "approval.resubmit.refused")]


async def wait_for_changes_requested(engine, request_key: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with Session(engine) as s:
                status = s.scalars(select(ApprovalRequest.status).where(
                    ApprovalRequest.request_key == request_key)).first()
            if status == "changes_requested":
                return
            await asyncio.sleep(0.05)


async def test_the_inbox_pages_act_through_the_same_service(live):
    first = await start_quote(live, requester="sue.sales", discount="15")
    second = await start_quote(live, discount="15")
    mia = await live.browser("mia.manager")

    claimed = await mia.post(f"/inbox/{first}/claim", data={"csrf_token": mia.csrf, "expected_version": "1",
                                                           "next": "/inbox?view=group_unclaimed"})
    assert claimed.status_code == 303 and claimed.headers["location"] == "/inbox?view=group_unclaimed"
    page = await mia.get(claimed.headers["location"])
    assert "Claimed: " in page.text and first not in re.findall(r'data-task-key="([^"]+)"', page.text)
    assert task_row(live.engine, first).assignee == "mia.manager"

    # Bulk approve from the list: both go through; a stale second click is reported per task.
    bulk = await mia.post("/inbox/bulk", data={"csrf_token": mia.csrf, "task_key": [first, second],
                                               "next": "/inbox?view=all_open"})
    assert bulk.status_code == 303
    after = await mia.get(bulk.headers["location"])
    assert "Approved 2 of 2" in after.text
    again = await mia.post("/inbox/bulk", data={"csrf_token": mia.csrf, "task_key": [first]})
    shown = await mia.get(again.headers["location"])
    assert "Not approved" in shown.text and "completed, not open" in shown.text

    # The task page's decision form: refused with the reason, then back on the task page.
    third = await start_quote(live, requester="mia.manager", discount="15")
    refused = await mia.post(f"/inbox/{third}/approve", data={"csrf_token": mia.csrf, "expected_version": "1"})
    assert refused.status_code == 303 and refused.headers["location"] == f"/inbox/{third}"
    assert "may not decide it" in (await mia.get(refused.headers["location"])).text
    assert refusals(live.engine)[-1].data["reason"] == "SegregationOfDuties"
