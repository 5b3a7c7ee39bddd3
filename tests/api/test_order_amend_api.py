"""POST /api/v1/quotes/{number}/amend through a real Temporal dev server and worker: a confirmed order amended
(down with a credit note, up with a new line), refused below what waits in an open shipment (422, naming the
shipment), over the credit limit (409 CreditLimitExceeded), on a stale version (409), and for the warehouse (403);
a price the quote policy routes answers 202 with the amendment pending (shown on the order and its page with its
task; a second amendment meanwhile is a 409), and a sales manager's rejection in the inbox leaves the order as it
was. Fixtures and helpers come from tests/api/test_quotes_api.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from sqlmodel import Session

from api import quotes
from models import order_views
from tests.api.test_quotes_api import eventually, live, order_row  # noqa: F401  (live is a fixture)
from tests.sales_world import CABLE, CUSTOMER, LAMP, SCARCE


def order_tasks(engine, number: str) -> list:
    with Session(engine) as s:
        tasks = order_views.order_tasks(s, number)
        s.expunge_all()
        return tasks


async def test_amend_a_confirmed_order_through_the_api(live):
    sam = live.api("sam.sales")
    created = await sam.post("/api/v1/quotes", json={"customer_code": CUSTOMER, "lines": [
        {"sku": LAMP, "quantity": "25"}, {"sku": CABLE, "quantity": "10"}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    assert (await sam.post(f"/api/v1/quotes/{number}/accept")).json()["status"] == "confirmed"

    def body(*pairs, **kw):
        return {"lines": [{"sku": sku, "quantity": q} for sku, q in pairs], **kw}

    # Shipment 1 holds the 20 lamps on hand and the 10 cables: neither may go below that.
    low = await sam.post(f"/api/v1/quotes/{number}/amend", json=body((LAMP, "15"), (CABLE, "10")))
    assert low.status_code == 422, low.text
    assert f"ship or cancel shipment SHP-{number}-1 first" in low.text
    # 600 cables would take Elektro Muster over its 5,000.00 limit.
    over = await sam.post(f"/api/v1/quotes/{number}/amend", json=body((LAMP, "25"), (CABLE, "600")))
    assert over.status_code == 409 and over.headers[quotes.REFUSAL_HEADER] == "CreditLimitExceeded", over.text
    assert "credit limit 5000.00" in over.text
    stale = await sam.post(f"/api/v1/quotes/{number}/amend", json=body((LAMP, "20"), (CABLE, "10"),
                                                                      expected_version=5))
    assert stale.status_code == 409 and stale.headers[quotes.REFUSAL_HEADER] == "StaleVersion", stale.text
    warehouse = await live.api("walter.warehouse").post(f"/api/v1/quotes/{number}/amend",
                                                         json=body((LAMP, "20"), (CABLE, "10")))
    assert warehouse.status_code == 403, warehouse.text
    assert order_row(live.engine, number).version == 1

    amended = await sam.post(f"/api/v1/quotes/{number}/amend", json=body(
        (LAMP, "20"), (CABLE, "10"), (SCARCE, "1"), expected_version=1, comment="5 lamps fewer, 1 scarce more"))
    assert amended.status_code == 200, amended.text
    out = amended.json()
    # 20 × 45.00 + 10 × 9.00 + 89.99 = 1,079.99; VAT 171.00 + 17.10 + 17.10.
    assert (out["version"], D(out["amount_total"]), out["status"]) == (2, D("1285.19"), "confirmed")
    assert [(ln["sku"], D(ln["quantity"])) for ln in out["lines"]] == [(LAMP, D("20")), (CABLE, D("10")),
                                                                       (SCARCE, D("1"))]
    events = [e for e in out["timeline"] if e["what"] == "order amended (version 2)"]
    assert [e["actor"] for e in events] == ["sam.sales"]
    assert events[0]["detail"].startswith(f"{LAMP} 25 → 20; + 1 {SCARCE}; total 1285.19; credit note CRN-")
    row = order_row(live.engine, number)
    assert (row.version, row.amount_total, row.amount_invoiced) == (2, D("1285.19"), D("1071.00"))


async def test_amend_from_the_order_page(live):
    sam = live.api("sam.sales")
    created = await sam.post("/api/v1/quotes", json={"customer_code": CUSTOMER, "lines": [
        {"sku": CABLE, "quantity": "10"}]})
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    assert (await sam.post(f"/api/v1/quotes/{number}/accept")).json()["status"] == "confirmed"

    browser = await live.browser("sam.sales")
    page = await browser.get(f"/orders/{number}")
    assert f'href="/orders/{number}/amend" data-action="amend"' in page.text
    form = await browser.get(f"/orders/{number}/amend")
    assert form.status_code == 200 and f'action="/orders/{number}/amend"' in form.text
    assert 'name="lines-0-quantity" value="10"' in form.text and 'name="valid_until"' not in form.text

    def posted(quantity: str) -> dict[str, str]:
        return {"csrf_token": browser.csrf, "expected_version": "1", "comment": "by phone",
                "lines-0-sku": CABLE, "lines-0-quantity": quantity, "lines-0-discount_percent": "0",
                "lines-1-sku": SCARCE, "lines-1-quantity": "1"}

    # Below the 10 waiting in shipment 1: the form comes back with the reason.
    refused = await browser.post(f"/orders/{number}/amend", data=posted("4"))
    assert refused.status_code == 422 and f"ship or cancel shipment SHP-{number}-1 first" in refused.text
    done = await browser.post(f"/orders/{number}/amend", data=posted("12"))
    assert done.status_code == 303 and done.headers["location"] == f"/orders/{number}", done.text
    after = await browser.get(f"/orders/{number}")
    assert "amended (version 2)" in after.text
    row = order_row(live.engine, number)
    assert (row.version, row.amount_total) == (2, D("235.61"))  # 12 × 9.00 + 89.99, VAT per line 20.52 + 17.10

    clerk = await live.browser("walter.warehouse")
    assert 'data-action="amend"' not in (await clerk.get(f"/orders/{number}")).text


async def test_amend_prices_through_the_api(live):
    sam = live.api("sam.sales")
    created = await sam.post("/api/v1/quotes", json={"customer_code": CUSTOMER, "lines": [
        {"sku": LAMP, "quantity": "25"}, {"sku": CABLE, "quantity": "10"}]})
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    assert (await sam.post(f"/api/v1/quotes/{number}/accept")).json()["status"] == "confirmed"
    # The lamps are invoiced at confirmation (ordered policy): 25 × 45.00 + 19 % = 1,338.75.
    await eventually(lambda: order_row(live.engine, number).amount_invoiced == D("1338.75"), "lamps invoiced")

    def body(lamp_price: str | None = None, cable_price: str | None = None) -> dict:
        return {"lines": [{"sku": LAMP, "quantity": "25", "unit_price": lamp_price},
                          {"sku": CABLE, "quantity": "10", "unit_price": cable_price}]}

    # A price that is not money is a 422 naming the field, before the process is asked.
    for bad in ("-1", "8.999", "cheap"):
        refused = await sam.post(f"/api/v1/quotes/{number}/amend", json=body(cable_price=bad))
        assert refused.status_code == 422, refused.text
        assert [e["loc"] for e in refused.json()["detail"]] == [["body", "lines", 1, "unit_price"]]
    # Dearer lamps, already invoiced: 409, cancel and invoice again instead.
    dearer = await sam.post(f"/api/v1/quotes/{number}/amend", json=body(lamp_price="50.00"))
    assert dearer.status_code == 409 and dearer.headers[quotes.REFUSAL_HEADER] == "OrderStateInvalid", dearer.text
    assert "cancel the order and invoice it again at 50.00" in dearer.text
    # 40.00 a lamp: 1,090.00 for 1,215.00 agreed is 10.288 % off, past the policy's 10 %: accepted for approval
    # (202; request 2: the refused amendment above took key 1), nothing changed yet; the order shows it and its task.
    cheap = await sam.post(f"/api/v1/quotes/{number}/amend", json=body(lamp_price="40.00"))
    assert cheap.status_code == 202, cheap.text
    out = cheap.json()
    pending = out["pending_amendment"]
    assert (out["version"], D(out["amount_total"])) == (1, D("1445.85"))
    assert (pending["request_key"], pending["requested_by"], pending["summary"], D(pending["amount_total"])) == (
        f"amendment:{number}:2", "sam.sales", f"{LAMP} price 45.00 → 40.00", D("1297.10"))
    assert "discount % > 10" in pending["reason"]
    assert [(ln["sku"], D(ln["unit_price_before"]), D(ln["unit_price"])) for ln in pending["lines"]] == [
        (LAMP, D("45.00"), D("40.00"))]
    got = (await sam.get(f"/api/v1/quotes/{number}")).json()
    assert got["pending_amendment"]["request_key"] == f"amendment:{number}:2"
    tasks = await eventually(lambda: [t for t in order_tasks(live.engine, number)
                                      if t.request_key == f"amendment:{number}:2"], "the amendment's task")
    listed = (await sam.get(f"/api/v1/quotes/{number}")).json()["approval_tasks"]
    assert [(t["request_key"], t["status"], t["candidate_groups"]) for t in listed] == [
        (f"amendment:{number}:2", "ready", ["sales-manager"])]
    # The order page shows it with a link to the task, and offers no second amendment meanwhile.
    page = (await (await live.browser("sam.sales")).get(f"/orders/{number}")).text
    assert 'id="pending-amendment"' in page and f'href="/inbox/{tasks[0].task_key}"' in page
    assert f"{LAMP} price 45.00 → 40.00" in page and 'data-action="amend"' not in page
    # The approver's task page shows the change and, as for a quote, the customer's credit exposure; the inbox
    # filters by the amendment kind.
    mia_pages = await live.browser("mia.manager")
    task_page = (await mia_pages.get(f"/inbox/{tasks[0].task_key}")).text
    assert "Customer credit exposure" in task_page, task_page
    assert '<option value="amendment"' in (await mia_pages.get("/inbox")).text
    # A second amendment waits for the first one's decision.
    second = await sam.post(f"/api/v1/quotes/{number}/amend", json=body(lamp_price="42.00"))
    assert second.status_code == 409 and second.headers[quotes.REFUSAL_HEADER] == "OrderStateInvalid", second.text
    assert "already has an amendment awaiting approval" in second.text
    # A sales manager rejects it through the inbox API: the order stays as it was.
    rejected = await live.api("mia.manager").post(f"/api/v1/tasks/{tasks[0].task_key}/decision",
                                                  json={"outcome": "rejected", "comment": "too cheap"})
    assert rejected.status_code == 200, rejected.text

    async def settled() -> dict:
        for _ in range(300):
            now = (await sam.get(f"/api/v1/quotes/{number}")).json()
            if now["pending_amendment"] is None:
                return now
            await asyncio.sleep(0.1)
        raise AssertionError("the rejected amendment is still pending")

    after = await settled()
    assert [e["detail"] for e in after["timeline"] if e["what"] == "amendment rejected"] == [
        f"{LAMP} price 45.00 → 40.00: too cheap"]
    assert order_row(live.engine, number).version == 1

    # 42.00 a lamp (6.173 % off): the 25 invoiced get 3.00 each back, 75.00 + 14.25 VAT.
    done = await sam.post(f"/api/v1/quotes/{number}/amend", json={**body(lamp_price="42.00"), "expected_version": 1})
    assert done.status_code == 200, done.text
    out = done.json()
    # 25 × 42.00 + 10 × 9.00 = 1,140.00; VAT 199.50 + 17.10.
    assert (out["version"], D(out["amount_total"])) == (2, D("1356.60"))
    assert [(ln["sku"], D(ln["unit_price"]), ln["manual_price"], ln["removed"]) for ln in out["lines"]] == [
        (LAMP, D("42.00"), True, False), (CABLE, D("9.00"), False, False)]
    notes = [i for i in out["invoices"] if i["kind"] == "credit_note"]
    assert [D(i["amount_total"]) for i in notes] == [D("89.25")]
    events = [e for e in out["timeline"] if e["what"] == "order amended (version 2)"]
    assert events[0]["detail"].startswith(f"{LAMP} price 45.00 → 42.00; total 1356.60; credit note CRN-")
    row = order_row(live.engine, number)
    assert (row.amount_total, row.amount_invoiced) == (D("1356.60"), D("1249.50"))  # the lamps at 42.00 + VAT
