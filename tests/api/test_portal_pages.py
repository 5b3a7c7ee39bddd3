"""The customer portal's pages: a contact logs in through the form and lands on /portal, which lists their customer's
quotes and orders once sent and their invoices with what is due (nobody else's, nothing still in the making); the
quote page shows the document with Accept and Decline while the quote is sent; staff pages send a contact to the
portal (GET) or refuse them (403), and the portal does the same to staff; every form needs the CSRF token; and on a
real Temporal dev server and worker the contact accepts a quote through the form and sees it confirmed.

Fixtures and helpers are tests/api/test_quotes_api.py's and tests/api/test_portal_api.py's.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from models import orders
from models.masterdata import Customer
from models.sales import CustomerInvoice, SalesOrder
from tests.api.test_portal_api import CONTACT_PASSWORD, make_contact
from tests.api.test_quotes_api import eventually, live, offline, order_row, quote_rows  # noqa: F401 (fixtures)
from tests.sales_world import CABLE, CASH_CUSTOMER, CUSTOMER, LAMP, SCARCE
from workflows.contracts import Actor, AmendOrderCommand, QuoteLineInput

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TODAY = date.today()


async def contact_browser(clients, username: str):
    """A contact logged in through the form, asking for the start page: they land on the portal."""
    client = clients._client()
    token = CSRF.search((await client.get("/login")).text).group(1)
    done = await client.post("/login", data={"username": username, "password": CONTACT_PASSWORD, "csrf_token": token,
                                             "next": "/"})
    assert done.status_code == 303 and done.headers["location"] == "/portal", done.text
    client.csrf = CSRF.search((await client.get("/portal")).text).group(1)
    return client


def rows(html: str) -> list[str]:
    return re.findall(r'class="portal-order" data-number="([^"]+)"', html)


def add_invoice(engine, number: str, order_number: str, total: str, residual: str) -> None:
    """An invoice row as the order activities write it (the ledger side is not what these pages show)."""
    with Session(engine) as s, s.begin():
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == order_number)).one()
        s.add(CustomerInvoice(key=f"{order_number}/inv/1", number=number, order_id=order.id,
                              customer_id=order.customer_id, invoice_date=TODAY, due_date=TODAY + timedelta(days=30),
                              amount_untaxed=D(total) - D(total) * 19 / 119, amount_tax=(D(total) * 19 / 119)
                              .quantize(D("0.01")), amount_total=D(total), amount_residual=D(residual),
                              status="posted" if residual == total else "partial"))


async def test_the_portal_shows_the_contacts_own_orders_and_refuses_the_rest(offline):
    sent, confirmed, draft, others = quote_rows(
        offline.engine,
        ("sam.sales", CUSTOMER, [(CABLE, "10")], "PO-1", "sent"),
        ("sam.sales", CUSTOMER, [(LAMP, "2")], "PO-2", "confirmed"),
        ("sam.sales", CUSTOMER, [(CABLE, "1")], None, "draft"),
        ("sam.sales", CASH_CUSTOMER, [(LAMP, "1")], "PO-3", "sent"),
    )
    add_invoice(offline.engine, "INV-T1", confirmed, "119.00", "69.00")
    add_invoice(offline.engine, "INV-T2", others, "59.50", "59.50")
    await make_contact(offline, "bea.buyer", CUSTOMER)
    bea = await contact_browser(offline, "bea.buyer")

    home = await bea.get("/portal")
    assert home.status_code == 200
    assert rows(home.text) == [confirmed, sent]  # newest first; the draft and C-2000's quote are not there
    assert "Elektro Muster GmbH" in home.text and 'data-testid="to-answer">1<' in home.text
    assert 'data-testid="amount-due">69.00<' in home.text
    assert 'data-invoice="INV-T1"' in home.text and "INV-T2" not in home.text and others not in home.text
    # No staff navigation for a contact.
    assert 'href="/portal"' in home.text and "My orders" in home.text
    for staff_link in ('href="/inbox"', 'href="/orders"', 'href="/customers"', 'href="/out-of-office"'):
        assert staff_link not in home.text, staff_link

    page = await bea.get(f"/portal/quotes/{sent}")
    assert page.status_code == 200
    assert f"Quotation {sent}" in page.text and 'data-testid="document-total">107.10<' in page.text
    assert 'data-action="accept"' in page.text and 'data-action="decline"' in page.text
    assert "Awaiting your answer" in page.text and "margin" not in page.text.lower()
    order_page = await bea.get(f"/portal/quotes/{confirmed}")
    assert f"Order confirmation {confirmed}" in order_page.text and 'data-status="confirmed"' in order_page.text
    assert 'data-action="accept"' not in order_page.text and 'data-action="decline"' not in order_page.text
    assert 'data-invoice="INV-T1"' in order_page.text
    document = await bea.get(f"/portal/quotes/{sent}/document")
    assert document.status_code == 200 and f'href="/portal/quotes/{sent}"' in document.text
    for hidden in (others, draft, "Q-0000000001"):
        assert (await bea.get(f"/portal/quotes/{hidden}")).status_code == 404, hidden
        assert (await bea.get(f"/portal/quotes/{hidden}/document")).status_code == 404, hidden

    # Staff pages send a contact to the portal, and refuse their forms.
    for url in ("/", "/orders", f"/orders/{sent}", f"/orders/{sent}/document", "/inbox", "/customers",
                "/out-of-office", "/login?next=/orders"):
        away = await bea.get(url)
        assert away.status_code == 303 and away.headers["location"] == "/portal", url
    staff_form = await bea.post(f"/orders/{sent}/accept", data={"csrf_token": bea.csrf})
    assert staff_form.status_code == 403
    assert (await bea.post("/orders/new", data={"csrf_token": bea.csrf, "customer_code": CUSTOMER})).status_code == 403

    # Forms need the session's CSRF token; a decline needs a reason.
    no_token = await bea.post(f"/portal/quotes/{sent}/accept", data={"expected_version": "1"})
    assert no_token.status_code == 403
    wrong_token = await bea.post(f"/portal/quotes/{sent}/decline", data={"csrf_token": "forged", "reason": "no"})
    assert wrong_token.status_code == 403
    no_reason = await bea.post(f"/portal/quotes/{sent}/decline", data={"csrf_token": bea.csrf, "reason": " "})
    assert no_reason.status_code == 303 and no_reason.headers["location"] == f"/portal/quotes/{sent}"
    assert "please tell us why" in (await bea.get(f"/portal/quotes/{sent}")).text
    not_theirs = await bea.post(f"/portal/quotes/{others}/accept", data={"csrf_token": bea.csrf})
    assert not_theirs.status_code == 404
    late = await bea.post(f"/portal/quotes/{confirmed}/cancel", data={"csrf_token": bea.csrf, "reason": "too late"})
    assert late.status_code == 303
    assert "ask your sales contact (sam.sales)" in (await bea.get(f"/portal/quotes/{confirmed}")).text
    # Without the engine the answer is refused with the reason, and nothing changes.
    offline_accept = await bea.post(f"/portal/quotes/{sent}/accept", data={"csrf_token": bea.csrf})
    assert offline_accept.status_code == 303
    assert "Not accepted" in (await bea.get(f"/portal/quotes/{sent}")).text
    assert [order_row(offline.engine, n).status for n in (sent, confirmed, others)] == ["sent", "confirmed", "sent"]

    # The portal is the contact's: staff are sent home, and their writes refused.
    maria = await offline.browser("maria.manager")
    assert (await maria.get("/portal")).headers["location"] == "/"
    assert (await maria.post(f"/portal/quotes/{sent}/accept", data={"csrf_token": maria.csrf})).status_code == 403
    anonymous = offline._client()
    away = await anonymous.get("/portal")
    assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")


async def test_a_contact_sees_a_removed_line_struck_out_and_out_of_the_totals(offline):
    (number,) = quote_rows(offline.engine, ("sam.sales", CUSTOMER, [(CABLE, "10"), (SCARCE, "1")], None, "confirmed"))
    # The rep drops the SCARCE line (the data layer's amendment, as the workflow's activity runs it).
    with Session(offline.engine) as s, s.begin():
        orders.amend_order(s, number, AmendOrderCommand(Actor("sam.sales", ("sales",)),
                                                        (QuoteLineInput(CABLE, D("10")),), comment="not needed"),
                           key=f"{number}/amend/1", today=TODAY)
    on = datetime.now(UTC).date().isoformat()  # the audit event's day
    await make_contact(offline, "bea.buyer", CUSTOMER)

    # The JSON keeps the line (its number stays taken), says it is removed and when, but not by whom.
    detail = (await offline.api("bea.buyer").get(f"/api/v1/quotes/{number}")).json()
    assert [(ln["line_no"], ln["sku"], ln["removed"], ln["removed_on"], D(ln["quantity"]), D(ln["subtotal"]))
            for ln in detail["lines"]] == [(1, CABLE, False, None, D("10"), D("90.00")),
                                           (2, SCARCE, True, on, D("0"), D("0.00"))]
    assert "removed_by" not in detail["lines"][1]
    # The totals are the cables' alone: 10 × 9.00 = 90.00 + 17.10 VAT.
    assert (D(detail["amount_untaxed"]), D(detail["amount_total"])) == (D("90.00"), D("107.10"))

    bea = await contact_browser(offline, "bea.buyer")
    page = await bea.get(f"/portal/quotes/{number}")
    assert page.status_code == 200 and 'data-testid="document-total">107.10<' in page.text
    removed = re.findall(r'<tr data-sku="([^"]+)" data-removed="true".*?</tr>', page.text, re.S)
    assert removed == [SCARCE], page.text
    row = re.search(rf'<tr data-sku="{SCARCE}" data-removed="true".*?</tr>', page.text, re.S)[0]
    assert f"<s>{SCARCE}</s>" in row and f'data-testid="removed-note">Removed on {on}<' in row
    assert "89.99" not in page.text and "sam.sales" not in row  # no price for a line that is gone, no staff name


async def test_a_contact_accepts_and_declines_through_the_forms(live):
    await make_contact(live, "bea.buyer", CUSTOMER)
    sam = live.api("sam.sales")
    numbers = []
    for ref, sku, quantity in (("FORM-1", LAMP, "2"), ("FORM-2", CABLE, "5")):
        created = await sam.post("/api/v1/quotes", json={"customer_code": CUSTOMER, "customer_ref": ref,
                                                         "lines": [{"sku": sku, "quantity": quantity}]})
        assert created.status_code == 201, created.text
        numbers.append(number := created.json()["number"])
        assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
        await eventually(lambda: order_row(live.engine, number).status == "sent", f"{number} sent")
    to_accept, to_decline = numbers

    bea = await contact_browser(live, "bea.buyer")
    home = await bea.get("/portal")
    assert set(rows(home.text)) == {to_accept, to_decline} and 'data-testid="to-answer">2<' in home.text
    page = await bea.get(f"/portal/quotes/{to_accept}")
    version = re.search(r'name="expected_version" value="(\d+)"', page.text).group(1)
    accepted = await bea.post(f"/portal/quotes/{to_accept}/accept",
                              data={"csrf_token": bea.csrf, "expected_version": version})
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/portal/quotes/{to_accept}"
    after = await bea.get(f"/portal/quotes/{to_accept}")
    assert f"Accepted: {to_accept} is now confirmed." in after.text
    assert 'data-status="confirmed"' in after.text and f"Order {to_accept}" in after.text
    assert 'data-action="accept"' not in after.text
    row = order_row(live.engine, to_accept)
    assert (row.status, row.accepted_by) == ("confirmed", "bea.buyer")

    declined = await bea.post(f"/portal/quotes/{to_decline}/decline",
                              data={"csrf_token": bea.csrf, "reason": "we ordered elsewhere"})
    assert declined.status_code == 303
    assert f"Declined: {to_decline} is now cancelled." in (await bea.get(f"/portal/quotes/{to_decline}")).text
    row = order_row(live.engine, to_decline)
    assert (row.status, row.cancel_reason) == ("cancelled", "we ordered elsewhere")
    home = await bea.get("/portal")
    assert 'data-testid="to-answer">0<' in home.text and 'data-testid="in-progress">1<' in home.text
    with Session(live.engine) as s:
        assert s.scalar(select(Customer.code).join(SalesOrder, SalesOrder.customer_id == Customer.id)
                        .where(SalesOrder.number == to_accept)) == CUSTOMER
