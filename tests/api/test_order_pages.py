"""The order pages: the list with status tabs and counts, the order page (lines, totals, margin, credit exposure,
actions by status and role), the printable document, the quote form with messages next to the fields, CSRF, the
warehouse's scan page and the payment form; and a quote made, submitted, accepted and picked through the forms on a
real Temporal dev server and worker.

The browser clients log in through the login form (CSRF applies to cookie sessions only).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime
from decimal import Decimal as D

from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.sales import SalesOrder, Shipment
from tests.api.test_quotes_api import eventually, live, offline, order_row, quote_rows  # noqa: F401 (fixtures)
from tests.sales_world import CABLE, CASH_CUSTOMER, CUSTOMER, LAMP, SCARCE
from workflows.contracts import Actor, AmendOrderCommand, QuoteLineInput

TODAY = date.today()


def rows(html: str) -> list[str]:
    return re.findall(r'class="order-row" data-number="([^"]+)"', html)


async def test_list_detail_document_and_forms_without_the_engine(offline):
    q1, q2, q3 = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], "PO-1", "confirmed"),
        ("sam.sales", CASH_CUSTOMER, [(LAMP, "2")], "PO-2", "draft"),
        ("sven.sales", CUSTOMER, [(SCARCE, "5")], None, "credit_hold"),
    )
    maria = await offline.browser("maria.manager")
    listing = await maria.get("/orders")
    assert listing.status_code == 200
    assert rows(listing.text) == [q3, q2, q1]
    assert 'data-testid="count-all">3<' in listing.text and 'data-testid="count-credit_hold">1<' in listing.text
    assert 'data-testid="count-cancelled"' not in listing.text  # empty tabs are left out
    held = await maria.get("/orders?status=credit_hold")
    assert rows(held.text) == [q3] and 'data-testid="count-all">3<' in held.text
    assert rows((await maria.get("/orders?sort=-total")).text) == [q3, q2, q1]
    assert rows((await maria.get("/orders?customer=meier")).text) == [q2]
    assert (await maria.get("/orders?page=abc&date_from=soon&sort=colour&status=lost")).status_code == 200

    page = await maria.get(f"/orders/{q3}")
    assert page.status_code == 200
    for expected in (SCARCE, "89.99", "535.44", "Customer credit exposure", "642.54", "4,357.46", "Credit hold",
                     'data-testid="timeline-note">timeline unavailable'):
        assert expected in page.text, expected
    assert 'data-action="cancel"' in page.text and 'data-action="submit"' not in page.text
    draft = await maria.get(f"/orders/{q2}")
    assert 'data-action="submit"' in draft.text and 'data-action="edit"' in draft.text
    sven_view = await (await offline.browser("sven.sales")).get(f"/orders/{q2}")
    assert sven_view.status_code == 404  # another rep's quote

    document = await maria.get(f"/orders/{q2}/document")
    assert document.status_code == 200 and "Quotation " + q2 in document.text
    assert 'data-testid="document-total">119.00<' in document.text and "PO-2" in document.text
    assert "Order confirmation " + q1 in (await maria.get(f"/orders/{q1}/document")).text

    sam = await offline.browser("sam.sales")
    form = await sam.get("/orders/new")
    assert form.status_code == 200 and 'name="lines-0-sku"' in form.text
    fields = {"customer_code": CUSTOMER, "lines-0-sku": CABLE, "lines-0-quantity": "3", "lines-1-sku": LAMP,
              "lines-1-quantity": "lots", "lines-3-sku": "", "lines-3-quantity": ""}
    assert (await sam.post("/orders/new", data=fields)).status_code == 403  # no CSRF token
    bad = await sam.post("/orders/new", data={**fields, "csrf_token": sam.csrf})
    assert bad.status_code == 422
    assert re.search(r'data-error-for="lines\[1\]\.quantity">[^<]+<', bad.text)
    assert 'value="lots"' in bad.text and "not saved" in bad.text  # typed values come back
    no_engine = await sam.post("/orders/new", data={**fields, "lines-1-quantity": "2", "csrf_token": sam.csrf})
    assert no_engine.status_code == 503 and "Temporal" in no_engine.text
    with Session(offline.engine) as s:
        assert s.scalar(select(func.count()).select_from(SalesOrder)) == 3

    walter = await offline.browser("walter.warehouse")
    assert (await walter.get("/orders/new")).status_code == 403
    assert "Nothing to ship" in (await walter.get("/warehouse/shipments")).text
    assert (await walter.get("/warehouse/shipments/SHP-NOPE-1")).status_code == 404
    assert (await sam.get("/warehouse/shipments")).status_code == 403
    assert (await sam.get("/payments/new")).status_code == 403

    fiona = await offline.browser("fiona.finance")
    pay_form = await fiona.get(f"/payments/new?customer={CUSTOMER}")
    assert pay_form.status_code == 200 and f'value="{CUSTOMER}"' in pay_form.text
    bad_pay = await fiona.post("/payments/new", data={"reference": "B-9", "customer_code": CUSTOMER, "amount": "-5",
                                                      "payment_date": TODAY.isoformat(), "csrf_token": fiona.csrf})
    assert bad_pay.status_code == 422 and re.search(r'data-error-for="amount">[^<]+<', bad_pay.text)
    ok_pay = await fiona.post("/payments/new", data={"reference": "B-9", "customer_code": CUSTOMER,
                                                     "amount": "25.00", "payment_date": TODAY.isoformat(),
                                                     "csrf_token": fiona.csrf})
    assert ok_pay.status_code == 303  # recorded; no order of C-1000 waits on a payment, so nobody is told
    assert "Recorded: payment B-9" in (await fiona.get("/payments/new")).text

    anonymous = offline._client()
    away = await anonymous.get("/orders")
    assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")


async def test_a_quote_through_the_forms(live):
    sam = await live.browser("sam.sales")
    created = await sam.post("/orders/new", data={
        "csrf_token": sam.csrf, "customer_code": CASH_CUSTOMER, "customer_ref": "FORM-1",
        "lines-0-sku": CABLE, "lines-0-quantity": "2", "lines-1-sku": "", "lines-1-quantity": ""})
    assert created.status_code == 303, created.text
    number = created.headers["location"].rsplit("/", 1)[-1]
    page = await sam.get(f"/orders/{number}")
    assert f"Quote {number} created." in page.text  # the flash
    for _ in range(100):  # the process writes its first timeline entry once it has loaded the quote
        if "quote created" in page.text:
            break
        await asyncio.sleep(0.1)
        page = await sam.get(f"/orders/{number}")
    assert "quote created" in page.text and 'data-testid="waiting-for"' in page.text

    edit = await sam.get(f"/orders/{number}/edit")
    assert edit.status_code == 200 and 'name="expected_version" value="1"' in edit.text
    stale = await sam.post(f"/orders/{number}/edit", data={"csrf_token": sam.csrf, "expected_version": "7",
                                                           "lines-0-sku": CABLE, "lines-0-quantity": "3"})
    assert stale.status_code == 409 and "changed since you loaded it" in stale.text
    unknown = await sam.post(f"/orders/{number}/edit", data={"csrf_token": sam.csrf, "expected_version": "1",
                                                             "lines-0-sku": "NOPE-9", "lines-0-quantity": "3"})
    assert unknown.status_code == 422 and re.search(r'data-error-for="lines\[0\]\.sku">[^<]*NOPE-9', unknown.text)
    saved = await sam.post(f"/orders/{number}/edit", data={"csrf_token": sam.csrf, "expected_version": "1",
                                                           "lines-0-sku": CABLE, "lines-0-quantity": "3"})
    assert saved.status_code == 303 and order_row(live.engine, number).version == 2

    submitted = await sam.post(f"/orders/{number}/submit", data={"csrf_token": sam.csrf, "expected_version": "2"})
    assert submitted.status_code == 303
    await eventually(lambda: order_row(live.engine, number).status == "sent", "quote sent")
    accepted = await sam.post(f"/orders/{number}/accept", data={"csrf_token": sam.csrf})
    assert accepted.status_code == 303
    assert f"Accepted: {number} is now confirmed." in (await sam.get(f"/orders/{number}")).text
    again = await sam.post(f"/orders/{number}/accept", data={"csrf_token": sam.csrf})
    assert "Not accepted" in (await sam.get(again.headers["location"])).text

    def shipment() -> str | None:
        with Session(live.engine) as s:
            return s.scalar(select(Shipment.number).join(SalesOrder, SalesOrder.id == Shipment.order_id)
                            .where(SalesOrder.number == number))

    shp = await eventually(shipment, "a shipment")
    walter = await live.browser("walter.warehouse")
    assert shp in (await walter.get("/warehouse/shipments")).text
    scan_page = await walter.get(f"/warehouse/shipments/{shp}")
    assert scan_page.status_code == 200 and "autofocus" in scan_page.text and 'data-testid="missing"' in scan_page.text
    stray = await walter.post(f"/warehouse/shipments/{shp}/scan", data={"csrf_token": walter.csrf, "code": "XYZ"})
    assert stray.status_code == 422 and "“XYZ” is not on this shipment." in stray.text
    scanned = await walter.post(f"/warehouse/shipments/{shp}/scan", data={"csrf_token": walter.csrf,
                                                                           "code": CABLE.lower()})
    assert scanned.status_code == 200 and 'class="is-scanned"' in scanned.text
    assert 'data-testid="missing"' not in scanned.text and 'name="scanned" value="cab-100"' in scanned.text
    picked = await walter.post(f"/warehouse/shipments/{shp}/step", data={"csrf_token": walter.csrf, "step": "picked",
                                                                         "scanned": CABLE})
    assert picked.status_code == 303
    assert f"Picked: {shp}." in (await walter.get(picked.headers["location"])).text
    with Session(live.engine) as s:
        assert s.scalar(select(Shipment.status).where(Shipment.number == shp)) == "picked"


async def test_a_removed_line_is_struck_out_and_left_out_of_totals_and_the_document(offline):
    (number,) = quote_rows(offline.engine, ("sam.sales", CUSTOMER, [(CABLE, "10"), (SCARCE, "1")], None, "confirmed"))
    # The rep drops the SCARCE line (the data layer's amendment, as the workflow's activity runs it).
    with Session(offline.engine) as s, s.begin():
        orders.amend_order(s, number, AmendOrderCommand(Actor("sam.sales", ("sales",)),
                                                        (QuoteLineInput(CABLE, D("10")),), comment="not needed"),
                           key=f"{number}/amend/1", today=TODAY)
    on = datetime.now(UTC).date().isoformat()  # the audit event's day

    maria = await offline.browser("maria.manager")
    page = await maria.get(f"/orders/{number}")
    assert page.status_code == 200
    removed = re.search(rf'<tr data-sku="{SCARCE}" data-removed="true".*?</tr>', page.text, re.S)
    assert removed is not None, page.text
    assert f"<s>{SCARCE}</s>" in removed[0]
    assert re.search(rf'data-testid="removed-note">Removed on {on} by sam.sales<', removed[0])
    assert "89.99" not in removed[0]  # no price, amount or quantities for a line that is gone
    kept = re.search(rf'<tr data-sku="{CABLE}">.*?</tr>', page.text, re.S)
    assert kept is not None and "90.00" in kept[0]
    # The totals are the cables' alone: 90.00 + 17.10 VAT.
    assert 'data-testid="total">107.10<' in page.text and "1 line (and 1 removed)" in page.text

    document = await maria.get(f"/orders/{number}/document")
    assert SCARCE not in document.text and CABLE in document.text
    assert 'data-testid="document-total">107.10<' in document.text

    # The API keeps the line (its number stays taken) and says it is removed, by whom and when.
    detail = (await offline.api("maria.manager").get(f"/api/v1/quotes/{number}")).json()
    assert [(ln["sku"], ln["removed"], ln["removed_by"], ln["removed_on"], D(ln["quantity"]))
            for ln in detail["lines"]] == [(CABLE, False, None, None, D("10")), (SCARCE, True, "sam.sales", on, D("0"))]

    # The amend form does not offer the removed line again.
    form = await (await offline.browser("sam.sales")).get(f"/orders/{number}/amend")
    assert 'name="lines-0-sku" value="CAB-100"' in form.text and SCARCE not in form.text
