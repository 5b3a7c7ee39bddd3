"""The quotes, payments and shipment-steps API: lists and details read straight from rows the data layer wrote
(visibility by role, counts per status, filters, sorting, paging, credit exposure), refusals that need no engine
(403, 404, 422, and 503 when Temporal cannot be reached), and quote to cash end to end through a real Temporal dev
server and worker: create, duplicate reference, edit with optimistic concurrency, submit, accept, pick/pack/ship
with scans, invoice, payment, done; and a credit hold released by a payment.

JSON calls authenticate with API tokens made in the database (no Argon2 per test).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from decimal import Decimal as D

import httpx
import pytest_asyncio
from sqlalchemy import func, select
from sqlmodel import Session

from api import quotes
from api.deps import token_sha256
from api.main import create_app
from config import Settings
from models import orders
from models.demo_policies import credit_hold_policy
from models.sales import CustomerInvoice, NumberSequence, SalesOrder, SalesOrderLine, Shipment, ShipmentLine
from models.users import ApiToken, User, hash_password
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.sales_world import CABLE, CASH_CUSTOMER, CUSTOMER, LAMP, SCARCE, TIGHT_CUSTOMER, build_sales_world_in
from workflows.contracts import QuoteLineInput

PASSWORD = "quotes-test-password"
TODAY = date.today()


# ------------------------------------------------------------------------------------------- app and clients


def build_app(engine, database_url: str, temporal_client=None, **settings):
    app = create_app(Settings(database_url=database_url, app_env="test", secret_key="quotes-test-secret-0123456789",
                              **settings))
    app.state.engine.dispose()
    app.state.engine = engine
    if temporal_client is not None:
        app.state.temporal_client = temporal_client
    return app


class Clients:
    """`clients.api("sam.sales")`: a JSON client with an API token; `await clients.browser("sam.sales")`: a client
    logged in through the form (cookie session, CSRF token in `.csrf`)."""

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
            uid = s.scalars(select(User.id).where(User.username == username)).one()
            s.add(ApiToken(user_id=uid, name="test", token_sha256=token_sha256(token), prefix=token[:12]))
        return self._client(headers={"Authorization": f"Bearer {token}"})

    async def browser(self, username: str) -> httpx.AsyncClient:
        import re

        with Session(self.engine) as s, s.begin():
            s.scalars(select(User).where(User.username == username)).one().password_hash = _password_hash()
        client = self._client()
        page = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        done = await client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                                 "next": "/orders"})
        assert done.status_code == 303, done.text
        orders_page = await client.get("/orders")
        client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', orders_page.text).group(1)
        return client

    async def close(self) -> None:
        for c in self.open:
            await c.aclose()


_HASH: list[str] = []


def _password_hash() -> str:
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))  # Argon2: once per test run
    return _HASH[0]


def sales_world(engine):
    """The sales world (tests/sales_world.py) with the quote policy (discounts above 10 % need a sales manager)
    and the demo credit-hold policy (credit controllers release) in force."""
    world = build_sales_world_in(engine)
    with Session(engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        publish_policy(s, credit_hold_policy())
        # Workflow ids are quote numbers (q2c:Q-...) and the Temporal server is shared by the whole test session:
        # each test's quotes start at a number of their own, or a test would meet an earlier test's process.
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=random.randint(10**6, 10**9)))
    return world


@pytest_asyncio.fixture
async def offline(people_engine, sqlite_url) -> AsyncIterator[Clients]:
    """Clients of an app whose Temporal address answers nothing (port 9): reads and early refusals only."""
    sales_world(people_engine)
    app = build_app(people_engine, sqlite_url, temporal_address="127.0.0.1:9")
    c = Clients(app, people_engine)
    yield c
    await c.close()


@pytest_asyncio.fixture
async def live(temporal_env, worker, people_engine, sqlite_url) -> AsyncIterator[Clients]:
    """Clients of an app on the test Temporal server, with a worker on the app's task queue."""
    sales_world(people_engine)
    app = build_app(people_engine, sqlite_url, temporal_env.client, temporal_task_queue=worker)
    c = Clients(app, people_engine)
    yield c
    await c.close()


# ------------------------------------------------------------------------------------------- helpers


def quote_rows(engine, *specs: tuple[str, str, list[tuple[str, str]], str | None, str]) -> list[str]:
    """Quotes written by the data layer (no process): (rep, customer, [(sku, qty)], customer_ref, status)."""
    numbers = []
    with Session(engine) as s, s.begin():
        for rep, customer, lines, ref, status in specs:
            draft = orders.QuoteDraft(customer_code=customer, customer_ref=ref,
                                      lines=tuple(QuoteLineInput(sku, D(q)) for sku, q in lines))
            order = orders.create_quote(s, draft, rep=rep, today=TODAY)
            order.status = status
            s.add(order)
            numbers.append(order.number)
    return numbers


def order_row(engine, number: str) -> SalesOrder:
    with Session(engine) as s:
        row = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        s.expunge(row)
        return row


async def eventually(check: Callable[[], object], what: str, attempts: int = 300):
    """Poll until `check()` is truthy (the process moves on its own after an update returns)."""
    for _ in range(attempts):
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


async def get_json(client: httpx.AsyncClient, url: str, code: int = 200):
    response = await client.get(url)
    assert response.status_code == code, response.text
    return response.json()


def numbers(page: dict) -> list[str]:
    return [i["number"] for i in page["items"]]


def loc(response: httpx.Response) -> list[list]:
    return [e["loc"] for e in response.json()["detail"]]


# ------------------------------------------------------------------------------------------- reads


async def test_list_visibility_counts_filters_sorting_paging(offline):
    q1, q2, q3 = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], "PO-1", "confirmed"),
        ("sam.sales", CASH_CUSTOMER, [(LAMP, "2")], "PO-2", "draft"),
        ("sven.sales", CUSTOMER, [(SCARCE, "5")], None, "credit_hold"),
    )
    maria = offline.api("maria.manager")
    everything = await get_json(maria, "/api/v1/quotes")
    assert numbers(everything) == [q3, q2, q1]  # newest first
    assert everything["counts"]["all"] == 3 and everything["total"] == 3
    assert {k: v for k, v in everything["counts"].items() if v} == {
        "all": 3, "draft": 1, "confirmed": 1, "credit_hold": 1}
    by_number = {i["number"]: i for i in everything["items"]}
    # Priced by the data layer: C-1000's pricelist takes 10 % off cables; LAMP-200 at list for C-2000; VAT 19 %.
    assert D(by_number[q1]["amount_total"]) == D("107.10") and D(by_number[q1]["margin_percent"]) == D("33.333")
    assert D(by_number[q2]["amount_total"]) == D("119.00")
    assert D(by_number[q3]["amount_total"]) == D("535.44")  # 5 × 89.99 (formula rule) + 19 %

    # Who sees what.
    assert numbers(await get_json(offline.api("sam.sales"), "/api/v1/quotes")) == [q2, q1]
    assert numbers(await get_json(offline.api("sven.sales"), "/api/v1/quotes")) == [q3]
    carla = await get_json(offline.api("carla.credit"), "/api/v1/quotes")
    assert numbers(carla) == [q3] and carla["counts"]["all"] == 1
    assert numbers(await get_json(offline.api("walter.warehouse"), "/api/v1/quotes")) == [q1]
    assert numbers(await get_json(offline.api("fiona.finance"), "/api/v1/quotes")) == [q3, q2, q1]

    # Filters, a status tab (counts stay those of every status), sorting and paging.
    assert numbers(await get_json(maria, f"/api/v1/quotes?customer={CASH_CUSTOMER}")) == [q2]
    assert numbers(await get_json(maria, "/api/v1/quotes?customer=muster&sort=number")) == [q1, q3]
    assert numbers(await get_json(maria, "/api/v1/quotes?q=PO-2")) == [q2]
    assert numbers(await get_json(maria, "/api/v1/quotes?rep=sven.sales")) == [q3]
    drafts = await get_json(maria, "/api/v1/quotes?status=draft")
    assert numbers(drafts) == [q2] and drafts["total"] == 1 and drafts["counts"]["all"] == 3
    assert numbers(await get_json(maria, "/api/v1/quotes?sort=-total")) == [q3, q2, q1]
    later = (TODAY + timedelta(days=1)).isoformat()
    assert numbers(await get_json(maria, f"/api/v1/quotes?date_from={later}")) == []
    assert numbers(await get_json(maria, f"/api/v1/quotes?date_to={TODAY.isoformat()}&sort=number")) == [q1, q2, q3]
    first = await get_json(maria, "/api/v1/quotes?limit=2&sort=number")
    second = await get_json(maria, "/api/v1/quotes?limit=2&offset=2&sort=number")
    assert numbers(first) == [q1, q2] and numbers(second) == [q3] and second["total"] == 3
    await get_json(maria, "/api/v1/quotes?sort=colour", 422)
    await get_json(maria, "/api/v1/quotes?status=lost", 422)
    await get_json(maria, "/api/v1/quotes?date_from=next-week", 422)


async def test_detail_with_credit_exposure_and_without_the_engine(offline):
    q1, q3 = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], "PO-1", "confirmed"),
        ("sven.sales", CUSTOMER, [(SCARCE, "5")], None, "credit_hold"),
    )
    detail = await get_json(offline.api("maria.manager"), f"/api/v1/quotes/{q3}")
    assert detail["status"] == "credit_hold" and detail["customer_code"] == CUSTOMER and detail["rep"] == "sven.sales"
    [line] = detail["lines"]
    assert (line["sku"], D(line["quantity"]), D(line["unit_price"]), D(line["subtotal"])) == (
        SCARCE, D("5"), D("89.99"), D("449.95"))
    assert (D(detail["amount_untaxed"]), D(detail["amount_tax"])) == (D("449.95"), D("85.49"))
    # Exposure (ERPNext b5): nothing posted, the other confirmed order (107.10) and this order (535.44).
    credit = {k: D(str(v)) if not isinstance(v, bool) else v for k, v in detail["credit"].items()}
    assert credit == {"limit": D("5000.00"), "posted_receivable": D("0.00"), "uninvoiced_orders": D("107.10"),
                      "this_order": D("535.44"), "exposure": D("642.54"), "headroom": D("4357.46"),
                      "over_limit": False}
    # The engine cannot be reached: the page's data still comes, without the timeline, saying why.
    assert detail["timeline"] is None and "unavailable" in detail["timeline_note"]
    assert detail["shipments"] == [] and detail["invoices"] == [] and detail["approval_tasks"] == []

    # Not visible is not found, for the wrong rep and for a controller looking at an order not on hold.
    assert (await offline.api("sam.sales").get(f"/api/v1/quotes/{q3}")).status_code == 404
    carla = offline.api("carla.credit")
    assert (await carla.get(f"/api/v1/quotes/{q1}")).status_code == 404
    assert (await carla.get(f"/api/v1/quotes/{q3}")).status_code == 200
    assert (await carla.get("/api/v1/quotes/Q-999999")).status_code == 404


async def test_refusals_that_need_no_engine(offline):
    [q2] = quote_rows(offline.engine, ("sam.sales", CASH_CUSTOMER, [(LAMP, "2")], "PO-2", "draft"))
    sam = offline.api("sam.sales")
    body = {"customer_code": CUSTOMER, "lines": [{"sku": CABLE, "quantity": "3"}]}

    # Temporal unreachable: 503 with the reason, and nothing written.
    refused = await sam.post("/api/v1/quotes", json=body)
    assert refused.status_code == 503 and "Temporal" in refused.json()["detail"], refused.text
    submit = await sam.post(f"/api/v1/quotes/{q2}/submit")
    assert submit.status_code == 503 and submit.headers[quotes.REFUSAL_HEADER] == "Unavailable"
    with Session(offline.engine) as s:
        assert s.scalar(select(func.count()).select_from(SalesOrder)) == 1

    # Bad input is a 422 naming the field, before anything else is asked.
    zero = await sam.post("/api/v1/quotes", json={**body, "lines": [{"sku": CABLE, "quantity": "0"}]})
    assert zero.status_code == 422 and loc(zero) == [["body", "lines", 0, "quantity"]]
    none = await sam.post("/api/v1/quotes", json={**body, "lines": []})
    assert none.status_code == 422 and loc(none) == [["body", "lines"]]
    choice = await sam.post(f"/api/v1/quotes/{q2}/backorder-choice", json={"choice": "whatever"})
    assert choice.status_code == 422 and loc(choice) == [["body", "choice"]]

    # Roles: the warehouse creates no quotes, sales records no payments, finance records no shipment steps.
    walter = offline.api("walter.warehouse")
    assert (await walter.post("/api/v1/quotes", json=body)).status_code == 403
    payment = {"reference": "B-1", "customer_code": CUSTOMER, "amount": "10.00", "payment_date": TODAY.isoformat()}
    assert (await sam.post("/api/v1/payments", json=payment)).status_code == 403
    assert (await offline.api("fiona.finance").post("/api/v1/shipments/SHP-Q-000001-1/steps",
                                                    json={"step": "picked"})).status_code == 403
    assert (await walter.post("/api/v1/shipments/SHP-NOPE-1/steps", json={"step": "picked"})).status_code == 404
    # Someone else's quote: not found before the engine is asked.
    assert (await offline.api("sven.sales").post(f"/api/v1/quotes/{q2}/cancel")).status_code == 404
    # A payment with a bad customer is named (the data layer checks it; no process is told).
    fiona = offline.api("fiona.finance")
    bad = await fiona.post("/api/v1/payments", json={**payment, "customer_code": "C-NOPE"})
    assert bad.status_code == 422 and loc(bad) == [["body", "customer_code"]], bad.text


# ------------------------------------------------------------------------------------------- end to end


async def test_quote_to_cash_through_the_api(live):
    sam, walter, fiona = live.api("sam.sales"), live.api("walter.warehouse"), live.api("fiona.finance")
    body = {"customer_code": CASH_CUSTOMER, "customer_ref": "WEB-1",
            "lines": [{"sku": LAMP, "quantity": "2"}, {"sku": CABLE, "quantity": "3"}]}
    created = await sam.post("/api/v1/quotes", json=body)
    assert created.status_code == 201, created.text
    quote = created.json()
    number = quote["number"]
    assert created.headers["location"] == f"/api/v1/quotes/{number}"
    assert (quote["status"], quote["rep"], quote["version"]) == ("draft", "sam.sales", 1)
    assert (D(quote["amount_untaxed"]), D(quote["amount_total"])) == (D("130.00"), D("154.70"))

    again = await sam.post("/api/v1/quotes", json=body)
    assert again.status_code == 409 and number in again.json()["detail"], again.text
    unknown = await sam.post("/api/v1/quotes", json={**body, "customer_ref": "WEB-2",
                                                     "lines": [{"sku": CABLE, "quantity": "1"},
                                                               {"sku": "NOPE-1", "quantity": "1"}]})
    assert unknown.status_code == 422 and loc(unknown) == [["body", "lines", 1, "sku"]], unknown.text

    edit = {"lines": [{"sku": LAMP, "quantity": "2"}, {"sku": CABLE, "quantity": "4"}], "expected_version": 1}
    edited = await sam.patch(f"/api/v1/quotes/{number}", json=edit)
    assert edited.status_code == 200, edited.text
    assert edited.json()["quote"]["version"] == 2 and D(edited.json()["quote"]["amount_total"]) == D("166.60")
    assert not edited.json()["resubmitted"]
    stale = await sam.patch(f"/api/v1/quotes/{number}", json=edit)
    assert stale.status_code == 409 and stale.headers[quotes.REFUSAL_HEADER] == "StaleVersion", stale.text
    bad_sku = await sam.patch(f"/api/v1/quotes/{number}", json={"lines": [{"sku": "NOPE-2", "quantity": "1"}]})
    assert bad_sku.status_code == 422 and loc(bad_sku) == [["body", "lines", 0, "sku"]]

    detail = await get_json(sam, f"/api/v1/quotes/{number}")
    whats = [e["what"] for e in detail["timeline"]]
    assert whats[:2] == ["quote created", "quote edited (version 2)"], whats
    assert detail["waiting_for"]

    early = await sam.post(f"/api/v1/quotes/{number}/backorder-choice", json={"choice": "ship_complete"})
    assert early.status_code == 409 and early.headers[quotes.REFUSAL_HEADER] == "OrderStateInvalid"
    not_his = await live.api("sven.sales").post(f"/api/v1/quotes/{number}/submit")
    assert not_his.status_code == 404

    submitted = await sam.post(f"/api/v1/quotes/{number}/submit", json={"expected_version": 2})
    assert submitted.status_code == 200 and submitted.json()["status"] in ("pending_approval", "sent")
    # No discount: the policy has no rule for it and the chain approves at once.
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    accepted = await sam.post(f"/api/v1/quotes/{number}/accept", json={"comment": "by phone"})
    assert accepted.status_code == 200 and accepted.json() == {"number": number, "status": "confirmed"}

    def shipment() -> str | None:
        with Session(live.engine) as s:
            return s.scalar(select(Shipment.number).join(SalesOrder, SalesOrder.id == Shipment.order_id)
                            .where(SalesOrder.number == number))

    shp = await eventually(shipment, "a shipment")
    steps = f"/api/v1/shipments/{shp}/steps"
    stray = await walter.post(steps, json={"step": "picked", "scanned": ["4000000000001"]})
    assert stray.status_code == 422 and loc(stray) == [["body", "scanned", 0]], stray.text
    half = await walter.post(steps, json={"step": "picked", "scanned": [LAMP]})
    assert half.status_code == 422 and CABLE in half.text
    picked = await walter.post(steps, json={"step": "picked", "scanned": [LAMP.lower(), CABLE]})
    assert picked.status_code == 200 and picked.json()["status"] == "picked", picked.text
    early_ship = await walter.post(steps, json={"step": "shipped"})
    assert early_ship.status_code == 409 and "packed" in early_ship.json()["detail"]
    assert (await walter.post(steps, json={"step": "packed"})).json()["status"] == "packed"
    shipped = await walter.post(steps, json={"step": "shipped", "tracking_ref": "TRK-1"})
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped"

    def invoices() -> list[tuple[str, D]]:
        with Session(live.engine) as s:
            return [tuple(r) for r in s.execute(
                select(CustomerInvoice.number, CustomerInvoice.amount_total)
                .join(SalesOrder, SalesOrder.id == CustomerInvoice.order_id)
                .where(SalesOrder.number == number).order_by(CustomerInvoice.id)).all()]

    # Lamps are invoiced as ordered (at confirmation), cables as delivered (after shipping): two invoices.
    await eventually(lambda: len(invoices()) == 2, "both invoices")
    (first, lamps), (second, cables) = invoices()
    assert (lamps, cables) == (D("119.00"), D("47.60"))
    payment = {"reference": "BANK-1", "customer_code": CASH_CUSTOMER, "amount": "166.60",
               "payment_date": TODAY.isoformat()}
    paid = await fiona.post("/api/v1/payments", json=payment)
    assert paid.status_code == 201, paid.text
    assert paid.json()["notified"] == [number] and paid.json()["invoice_number"] == first
    repeat = await fiona.post("/api/v1/payments", json=payment)
    assert repeat.status_code == 200 and repeat.json()["reference"] == "BANK-1"
    await eventually(lambda: order_row(live.engine, number).status == "done", "order done")

    final = await get_json(sam, f"/api/v1/quotes/{number}")
    assert [s["status"] for s in final["shipments"]] == ["shipped"] and final["shipments"][0]["tracking_ref"] == "TRK-1"
    assert [(i["number"], i["status"]) for i in final["invoices"]] == [(first, "paid"), (second, "paid")]
    assert [(p["reference"], D(p["amount"])) for p in final["payments"]] == [("BANK-1", D("166.60"))]
    assert D(final["amount_paid"]) == D("166.60") and D(final["credit"]["this_order"]) == 0
    assert "order done" in [e["what"] for e in final["timeline"]]


async def test_credit_hold_shown_to_controllers_and_released_by_a_payment(live):
    sam, carla, fiona = live.api("sam.sales"), live.api("carla.credit"), live.api("fiona.finance")
    # 90 × 10.00 + 19 % = 1,071.00: over C-3000's limit of 1,000.00.
    created = await sam.post("/api/v1/quotes", json={"customer_code": TIGHT_CUSTOMER,
                                                     "lines": [{"sku": CABLE, "quantity": "90"}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert D(created.json()["amount_total"]) == D("1071.00")
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    assert (await carla.get(f"/api/v1/quotes/{number}")).status_code == 404  # not on hold yet
    accepted = await sam.post(f"/api/v1/quotes/{number}/accept")
    assert accepted.json() == {"number": number, "status": "credit_hold"}, accepted.text

    held = await get_json(carla, "/api/v1/quotes")
    assert numbers(held) == [number] and held["counts"]["credit_hold"] == 1

    async def open_task() -> dict | None:
        detail = await get_json(carla, f"/api/v1/quotes/{number}")
        return next((t for t in detail["approval_tasks"] if t["status"] in ("ready", "reserved")), None)

    task = None
    for _ in range(300):
        task = await open_task()
        if task:
            break
        await asyncio.sleep(0.1)
    assert task is not None and task["request_key"] == f"credit_hold:{number}"
    assert task["url"] == f"/inbox/{task['task_key']}" and "credit-controller" in task["candidate_groups"]
    detail = await get_json(carla, f"/api/v1/quotes/{number}")
    assert detail["credit"]["over_limit"] is True and D(detail["credit"]["exposure"]) == D("1071.00")
    # The controller's task page shows the customer's exposure as it stands, with the way to the order.
    page = await (await live.browser("carla.credit")).get(task["url"])
    assert page.status_code == 200
    panel = page.text.split('id="customer-credit"')[1].split("</section>")[0]
    for expected in ("Tight Credit KG", "1,000.00", "1,071.00", "Over the limit by", "71.00", f'href="/orders/{number}"'):
        assert expected in panel, expected

    # A payment on account brings the exposure to 571.00: the process releases the hold by itself.
    paid = await fiona.post("/api/v1/payments", json={"reference": "BANK-2", "customer_code": TIGHT_CUSTOMER,
                                                      "amount": "500.00", "payment_date": TODAY.isoformat()})
    assert paid.status_code == 201 and paid.json()["notified"] == [number], paid.text
    assert paid.json()["invoice_number"] is None
    await eventually(lambda: order_row(live.engine, number).status == "confirmed", "hold released")
    released = await get_json(sam, f"/api/v1/quotes/{number}")
    assert "credit hold released" in [e["what"] for e in released["timeline"]]
    assert all(t["status"] not in ("ready", "reserved") for t in released["approval_tasks"])
    assert (await carla.get(f"/api/v1/quotes/{number}")).status_code == 404  # off hold: off their list


async def test_the_customer_asked_about_a_shortage_cancels_the_rest(live):
    # C-2000 is asked when stock is short: 8 × SCARCE-300 against 5 on hand. The rep records "ship what is there
    # and cancel the rest": 5 ship, 3 are cancelled, nothing stays on backorder.
    sam = live.api("sam.sales")
    created = await sam.post("/api/v1/quotes", json={"customer_code": CASH_CUSTOMER,
                                                     "lines": [{"sku": SCARCE, "quantity": "8"}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    accepted = await sam.post(f"/api/v1/quotes/{number}/accept")
    assert accepted.json() == {"number": number, "status": "awaiting_customer"}, accepted.text

    page = await (await live.browser("sam.sales")).get(f"/orders/{number}")
    for choice in ("ship_available", "ship_complete", "cancel_rest"):
        assert f'value="{choice}"' in page.text, choice
    chosen = await sam.post(f"/api/v1/quotes/{number}/backorder-choice", json={"choice": "cancel_rest"})
    assert chosen.status_code == 200 and chosen.json()["status"] == "confirmed", chosen.text
    with Session(live.engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        line = s.scalars(select(SalesOrderLine).where(SalesOrderLine.order_id == order.id)).one()
        assert (line.quantity, line.qty_reserved, line.qty_cancelled) == (D("8"), D("5"), D("3"))
    await eventually(lambda: shipments_of(live.engine, number) == [D("5")], "one shipment of the 5 on hand")
    after = await (await live.browser("sam.sales")).get(f"/orders/{number}")
    assert 'id="backorder-choice"' not in after.text  # nothing left to wait for, nothing left to choose


def shipments_of(engine, number: str) -> list[D]:
    with Session(engine) as s:
        return list(s.scalars(
            select(ShipmentLine.quantity).join(Shipment, Shipment.id == ShipmentLine.shipment_id)
            .join(SalesOrder, SalesOrder.id == Shipment.order_id).where(SalesOrder.number == number)))
