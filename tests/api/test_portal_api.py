"""The customer's side of the JSON API: a customer contact (a user tied to one customer) is made by an admin with
the customer role and no other; they list and read only their customer's quotes once sent to them (another
customer's quote, or one of their own still in the making, is "not found"), in a shape without costs, margins,
approvals or credit figures, whatever the filters ask; every staff endpoint refuses them; and on a real Temporal dev
server and worker they accept a quote (the order confirms and is invoiced), decline one, and answer the backorder
question, each reaching the workflow as Actor(<contact>, ("customer",)).

Fixtures and helpers are tests/api/test_quotes_api.py's (the sales world, API-token clients, the live worker).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from sqlalchemy import func, select
from sqlmodel import Session

from api import quotes
from models.records import AuditEvent
from models.sales import SalesOrder, SalesOrderLine
from models.users import User
from tests.api.test_quotes_api import (  # noqa: F401 (fixtures)
    eventually,
    get_json,
    live,
    loc,
    numbers,
    offline,
    order_row,
    quote_rows,
)
from tests.sales_world import CABLE, CASH_CUSTOMER, CUSTOMER, LAMP, SCARCE, TIGHT_CUSTOMER

CONTACT_PASSWORD = "portal-contact-pass-1"


async def make_contact(clients, username: str, customer_code: str) -> dict:
    """A contact made the way an admin makes one: POST /api/v1/users with the customer's code."""
    made = await clients.api("ada.admin").post("/api/v1/users", json={
        "username": username, "full_name": username.title(), "email": f"{username}@customer.test",
        "password": CONTACT_PASSWORD, "customer_code": customer_code})
    assert made.status_code == 201, made.text
    return made.json()


def user_count(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(User))


# ------------------------------------------------------------------------------------------- who is a contact


async def test_an_admin_makes_a_contact_with_the_customer_role_only(offline):
    contact = await make_contact(offline, "bea.buyer", CUSTOMER)
    assert (contact["groups"], contact["customer_code"]) == (["customer"], CUSTOMER)
    me = await get_json(offline.api("bea.buyer"), "/api/v1/me")
    assert (me["username"], me["groups"], me["customer_code"]) == ("bea.buyer", ["customer"], CUSTOMER)
    assert (await get_json(offline.api("sam.sales"), "/api/v1/me"))["customer_code"] is None

    ada = offline.api("ada.admin")
    before = user_count(offline.engine)
    body = {"full_name": "X", "email": "x@customer.test", "password": CONTACT_PASSWORD}
    with_roles = await ada.post("/api/v1/users", json={**body, "username": "x.1", "customer_code": CUSTOMER,
                                                       "groups": ["customer", "sales"]})
    assert with_roles.status_code == 422 and loc(with_roles) == [["body", "groups"]], with_roles.text
    assert "no other" in with_roles.text
    no_customer = await ada.post("/api/v1/users", json={**body, "username": "x.2", "groups": ["customer"]})
    assert no_customer.status_code == 422 and loc(no_customer) == [["body", "groups"]], no_customer.text
    assert "customer_code" in no_customer.text
    unknown = await ada.post("/api/v1/users", json={**body, "username": "x.3", "customer_code": "C-9999"})
    assert unknown.status_code == 422 and loc(unknown) == [["body", "customer_code"]], unknown.text
    assert user_count(offline.engine) == before  # nothing half-made

    regroup = await ada.put(f"/api/v1/users/{contact['id']}/groups", json={"groups": ["customer", "finance"]})
    assert regroup.status_code == 422 and loc(regroup) == [["body", "groups"]], regroup.text
    sam_id = (await get_json(ada, "/api/v1/users?q=sam.sales"))["items"][0]["id"]
    staff_as_customer = await ada.put(f"/api/v1/users/{sam_id}/groups", json={"groups": ["sales", "customer"]})
    assert staff_as_customer.status_code == 422, staff_as_customer.text
    assert (await get_json(ada, f"/api/v1/users/{contact['id']}"))["groups"] == ["customer"]
    assert (await get_json(ada, f"/api/v1/users/{sam_id}"))["groups"] == ["sales"]
    # The contact may still make themselves an API token for their own system.
    token = await offline.api("bea.buyer").post("/api/v1/tokens", json={"name": "erp"})
    assert token.status_code == 201, token.text


# ------------------------------------------------------------------------------------------- reads


async def test_a_contact_reads_only_their_customers_sent_quotes(offline):
    sent, confirmed, draft, pending, others, tight = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], "PO-1", "sent"),
        ("sven.sales", CUSTOMER, [(LAMP, "2")], "PO-2", "confirmed"),
        ("sam.sales", CUSTOMER, [(CABLE, "1")], None, "draft"),
        ("sam.sales", CUSTOMER, [(CABLE, "2")], None, "pending_approval"),
        ("sam.sales", CASH_CUSTOMER, [(LAMP, "1")], "PO-3", "sent"),
        ("sven.sales", TIGHT_CUSTOMER, [(SCARCE, "1")], None, "confirmed"),
    )
    await make_contact(offline, "bea.buyer", CUSTOMER)
    bea = offline.api("bea.buyer")

    mine = await get_json(bea, "/api/v1/quotes")
    assert numbers(mine) == [confirmed, sent] and mine["total"] == 2
    assert {k: v for k, v in mine["counts"].items() if v} == {"all": 2, "sent": 1, "confirmed": 1}
    assert "draft" not in mine["counts"]  # the company's own stages are not even counted
    by_number = {i["number"]: i for i in mine["items"]}
    assert by_number[sent]["actions"] == ["accept", "cancel"] and by_number[confirmed]["actions"] == []
    # C-1000's pricelist: cables 10 % off list, 10 × 9.00 = 90.00 + 19 % VAT.
    assert (D(by_number[sent]["amount_untaxed"]), D(by_number[sent]["amount_total"])) == (D("90.00"), D("107.10"))
    assert not {"margin_percent", "discount_percent", "channel"} & set(by_number[sent])

    # No filter reaches past the customer: another customer's code, status, number or rep finds nothing of theirs.
    for query in (f"customer={CASH_CUSTOMER}", "status=draft", f"q={others}", f"q={draft}", "status=pending_approval"):
        found = await get_json(bea, f"/api/v1/quotes?{query}")
        assert numbers(found) == [] and found["total"] == 0, query
    assert numbers(await get_json(bea, "/api/v1/quotes?rep=sven.sales")) == [confirmed]
    by_margin = await get_json(bea, "/api/v1/quotes?sort=-margin")
    assert by_margin["sort"] == "-created" and numbers(by_margin) == [confirmed, sent]

    detail = await get_json(bea, f"/api/v1/quotes/{sent}")
    assert (detail["number"], detail["status"], detail["customer_code"], detail["customer_ref"]) == (
        sent, "sent", CUSTOMER, "PO-1")
    assert [(x["sku"], D(x["quantity"]), D(x["unit_price"]), D(x["subtotal"])) for x in detail["lines"]] == [
        (CABLE, D(10), D("9.00"), D("90.00"))]
    assert (D(detail["amount_tax"]), D(detail["amount_total"]), D(detail["amount_due"])) == (
        D("17.10"), D("107.10"), D(0))
    for internal in ("credit", "approval_tasks", "timeline", "margin_percent", "cost_total", "list_total"):
        assert internal not in detail, internal
    assert "unit_cost" not in detail["lines"][0] and "list_price" not in detail["lines"][0]

    # Another customer's quote and their own quote still in the making: "not found", like a number nobody used.
    missing = await bea.get("/api/v1/quotes/Q-0000000001")
    for number in (others, tight, draft, pending):
        refused = await bea.get(f"/api/v1/quotes/{number}")
        assert refused.status_code == 404, number
        assert refused.json()["detail"] == missing.json()["detail"].replace("Q-0000000001", number)

    # Staff keep the full shape.
    staff = await get_json(offline.api("maria.manager"), f"/api/v1/quotes/{sent}")
    assert "margin_percent" in staff and "credit" in staff
    assert "margin_percent" in (await get_json(offline.api("maria.manager"), "/api/v1/quotes"))["items"][0]

    invoices = await get_json(bea, "/api/v1/portal/invoices")
    assert invoices["items"] == [] and D(invoices["amount_due"]) == D(0)


async def test_staff_endpoints_refuse_a_contact(offline):
    sent, confirmed, others = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], None, "sent"),
        ("sam.sales", CUSTOMER, [(LAMP, "2")], None, "confirmed"),
        ("sam.sales", CASH_CUSTOMER, [(LAMP, "1")], None, "sent"),
    )
    await make_contact(offline, "bea.buyer", CUSTOMER)
    bea = offline.api("bea.buyer")
    quote_body = {"customer_code": CUSTOMER, "lines": [{"sku": CABLE, "quantity": "1"}]}
    refused = [
        ("POST", "/api/v1/quotes", quote_body),
        ("PATCH", f"/api/v1/quotes/{sent}", {"lines": [{"sku": CABLE, "quantity": "1"}]}),
        ("POST", f"/api/v1/quotes/{sent}/submit", None),
        ("POST", f"/api/v1/quotes/{confirmed}/amend", {"lines": [{"sku": LAMP, "quantity": "1"}]}),
        ("POST", "/api/v1/payments", {"reference": "B-1", "customer_code": CUSTOMER, "amount": "1.00",
                                      "payment_date": "2026-01-05"}),
        ("POST", "/api/v1/shipments/SHP-1/steps", {"step": "picked"}),
        ("GET", "/api/v1/tasks", None),
        ("GET", "/api/v1/products", None),
        ("GET", "/api/v1/customers", None),
        ("GET", "/api/v1/suppliers", None),
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/policies", None),
        ("GET", "/api/v1/substitutions", None),
    ]
    for method, url, body in refused:
        response = await bea.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.status_code, response.text)

    # Their own answers are for their own quotes, and a confirmed order is changed through the rep.
    assert (await bea.post(f"/api/v1/quotes/{others}/accept")).status_code == 404
    assert (await bea.post(f"/api/v1/quotes/{others}/cancel", json={"comment": "no"})).status_code == 404
    late = await bea.post(f"/api/v1/quotes/{confirmed}/cancel", json={"comment": "changed my mind"})
    assert late.status_code == 409 and late.headers[quotes.REFUSAL_HEADER] == "NotCancellable", late.text
    assert "sam.sales" in late.json()["detail"]
    assert order_row(offline.engine, confirmed).status == "confirmed"
    # The portal's own endpoint is the contact's: staff have no invoices of "theirs".
    assert (await offline.api("fiona.finance").get("/api/v1/portal/invoices")).status_code == 403
    anonymous = offline._client()
    assert (await anonymous.get("/api/v1/portal/invoices")).status_code == 401


# ------------------------------------------------------------------------------------------- through the process


async def test_a_contact_accepts_declines_and_answers_the_backorder_question(live):
    await make_contact(live, "bea.buyer", CUSTOMER)
    await make_contact(live, "carl.cash", CASH_CUSTOMER)
    sam, bea, carl = live.api("sam.sales"), live.api("bea.buyer"), live.api("carl.cash")

    async def sent_quote(customer: str, sku: str, quantity: str, ref: str) -> str:
        created = await sam.post("/api/v1/quotes", json={"customer_code": customer, "customer_ref": ref,
                                                         "lines": [{"sku": sku, "quantity": quantity}]})
        assert created.status_code == 201, created.text
        number = created.json()["number"]
        assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
        await eventually(lambda: order_row(live.engine, number).status == "sent", f"{number} sent")
        return number

    # 1. bea accepts: LAMP-200 is invoiced on order, so the confirmed order is invoiced at once: 2 × 50.00 + 19 %.
    accepted_quote = await sent_quote(CUSTOMER, LAMP, "2", "BEA-1")
    assert (await carl.post(f"/api/v1/quotes/{accepted_quote}/accept")).status_code == 404  # not carl's customer
    accepted = await bea.post(f"/api/v1/quotes/{accepted_quote}/accept", json={"comment": "yes please"})
    assert accepted.status_code == 200 and accepted.json() == {"number": accepted_quote, "status": "confirmed"}
    row = order_row(live.engine, accepted_quote)
    assert (row.status, row.accepted_by, row.amount_total) == ("confirmed", "bea.buyer", D("119.00"))
    staff_view = await get_json(sam, f"/api/v1/quotes/{accepted_quote}")
    assert any(e["actor"] == "bea.buyer" for e in staff_view["timeline"]), staff_view["timeline"]
    mine = await get_json(bea, f"/api/v1/quotes/{accepted_quote}")
    assert (mine["status"], mine["actions"]) == ("confirmed", [])
    invoices = await invoices_once_there(bea)
    assert [(i["order_number"], D(i["amount_total"]), D(i["amount_residual"])) for i in invoices["items"]] == [
        (accepted_quote, D("119.00"), D("119.00"))]
    assert D(invoices["amount_due"]) == D("119.00")
    assert (await get_json(carl, "/api/v1/portal/invoices"))["items"] == []
    too_late = await bea.post(f"/api/v1/quotes/{accepted_quote}/cancel", json={"comment": "oops"})
    assert too_late.status_code == 409 and too_late.headers[quotes.REFUSAL_HEADER] == "NotCancellable"

    # 2. bea declines another quote, saying why; it was never an order, so nothing is reserved or invoiced.
    declined_quote = await sent_quote(CUSTOMER, CABLE, "5", "BEA-2")
    declined = await bea.post(f"/api/v1/quotes/{declined_quote}/cancel", json={"comment": "found it cheaper"})
    assert declined.status_code == 200 and declined.json()["status"] == "cancelled", declined.text
    row = order_row(live.engine, declined_quote)
    assert (row.status, row.cancel_reason, row.amount_invoiced) == ("cancelled", "found it cheaper", D(0))

    # 3. carl's customer (C-2000) is asked when stock is short: 8 × SCARCE-300 against 5 on hand.
    short_quote = await sent_quote(CASH_CUSTOMER, SCARCE, "8", "CARL-1")
    asked = await carl.post(f"/api/v1/quotes/{short_quote}/accept")
    assert asked.json() == {"number": short_quote, "status": "awaiting_customer"}, asked.text
    assert (await get_json(carl, f"/api/v1/quotes/{short_quote}"))["actions"] == ["backorder", "cancel"]
    assert (await bea.post(f"/api/v1/quotes/{short_quote}/backorder-choice",
                           json={"choice": "ship_available"})).status_code == 404
    chosen = await carl.post(f"/api/v1/quotes/{short_quote}/backorder-choice", json={"choice": "cancel_rest"})
    assert chosen.status_code == 200 and chosen.json()["status"] == "confirmed", chosen.text
    with Session(live.engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == short_quote)).one()
        line = s.scalars(select(SalesOrderLine).where(SalesOrderLine.order_id == order.id)).one()
        assert (line.quantity, line.qty_reserved, line.qty_cancelled) == (D("8"), D("5"), D("3"))
        # Every answer is on the audit trail under the contact's name.
        actors = set(s.scalars(select(AuditEvent.actor).where(AuditEvent.entity_id.in_(
            [accepted_quote, declined_quote, short_quote]))))
    assert {"bea.buyer", "carl.cash"} <= actors, actors


async def invoices_once_there(client) -> dict:
    """The contact's invoice list once it lists one (the order's invoice is written as it confirms)."""
    for _ in range(100):
        page = await get_json(client, "/api/v1/portal/invoices")
        if page["items"]:
            return page
        await asyncio.sleep(0.1)
    raise AssertionError("no invoice reached the portal")
