"""The customer portal in a real browser, against a real Temporal dev server and worker.

sam.sales quotes 2 × LAMP-200 to C-1000 (Elektro Muster GmbH: 50.00 each, 100.00 + 19 % VAT = 119.00) and submits
it; without a discount the quote policy asks nobody, so the process sends it. The customer's contact buyer.muster
opens the site, logs in and lands in the portal (no staff navigation), finds the quote waiting for an answer, opens
it (the quotation as the printable document shows it), accepts it, and the page shows the order confirmed; back on
the portal start page the order is in progress and its invoice (LAMP-200 is invoiced on order) is due.

The mechanics are tests/e2e/test_orders_browser.py's: uvicorn on the test's event loop, where the Temporal client
and the worker live, and Playwright's async API driving chromium on that loop too.
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest
from sqlalchemy import select
from sqlmodel import Session

from api.main import create_app
from api.routes.users import set_groups
from config import Settings
from models.sales import NumberSequence, SalesOrder
from models.users import CUSTOMER_ROLE, User, hash_password
from tests.api.test_quotes_api import Clients
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.e2e.test_inbox_browser import CHROMIUM_ARGS, _serve
from tests.sales_world import CUSTOMER, LAMP, build_sales_world_in

pytestmark = pytest.mark.e2e

CONTACT, PASSWORD = "buyer.muster", "portal-e2e-password-1"
TOTAL = "119.00"
WAIT = 30.0  # a guard against hanging while the process moves on, not a speed assertion


def _world(engine) -> None:
    """The sales world, the quote policy in force (discounts above 10 % need a sales manager) and C-1000's contact
    person; quote numbers of this test's own on the dev server the test session shares."""
    world = build_sales_world_in(engine)
    with Session(engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=random.randint(10**6, 10**9)))
        contact = User(username=CONTACT, full_name="Bernd Muster", email="bernd@muster.test",
                       customer_id=world.customer_id, password_hash=hash_password(PASSWORD))
        s.add(contact)
        s.flush()
        set_groups(s, contact.id, [CUSTOMER_ROLE])


def _status(engine, number: str) -> str:
    with Session(engine) as s:
        return s.scalar(select(SalesOrder.status).where(SalesOrder.number == number))


async def test_the_customer_accepts_the_sent_quote_in_the_portal(chromium_path, screenshots, temporal_env, worker,
                                                                 people_engine, sqlite_url):
    from playwright.async_api import async_playwright, expect

    engine = people_engine
    _world(engine)
    app = create_app(Settings(database_url=sqlite_url, app_env="test", secret_key="portal-e2e-secret-0123456789",
                              temporal_task_queue=worker))
    app.state.engine.dispose()
    app.state.engine = engine
    app.state.temporal_client = temporal_env.client

    # The rep's side, through the JSON API: the quote is made, submitted and sent by the process.
    clients = Clients(app, engine)
    sam = clients.api("sam.sales")
    created = await sam.post("/api/v1/quotes", json={"customer_code": CUSTOMER, "customer_ref": "MUSTER-77",
                                                     "lines": [{"sku": LAMP, "quantity": "2"}]})
    assert created.status_code == 201, created.text
    number = created.json()["number"]
    assert (await sam.post(f"/api/v1/quotes/{number}/submit")).status_code == 200
    async with asyncio.timeout(WAIT):
        while _status(engine, number) != "sent":
            await asyncio.sleep(0.1)
    await clients.close()

    base, server, serving, sock = await _serve(app)

    async def shot(page, name: str) -> None:
        await page.screenshot(path=str(screenshots / f"portal-{name}.png"), full_page=True)

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                                       args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 1366, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)

            # ---------------------------------------------------------------- 1. log in: the portal, not the staff's
            await page.goto(base + "/")
            await expect(page).to_have_url(re.compile(r"/login\?next="))
            await page.get_by_label("Username").fill(CONTACT)
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            await expect(page).to_have_url(base + "/portal")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Elektro Muster GmbH")
            nav = page.get_by_role("navigation", name="Main")
            await expect(nav.get_by_role("link", name="My orders")).to_be_visible()
            for staff_page in ("Inbox", "Orders", "Products", "Customers"):
                await expect(nav.get_by_role("link", name=staff_page, exact=True)).to_have_count(0)
            row = page.locator(f'tr.portal-order[data-number="{number}"]')
            await expect(row).to_contain_text("Awaiting your answer")
            await expect(row).to_contain_text("MUSTER-77")
            await expect(row.locator("td").nth(5)).to_have_text(TOTAL)
            await expect(page.get_by_test_id("to-answer")).to_have_text("1")
            await shot(page, "01-home")

            # ---------------------------------------------------------------- 2. the quote, as the document shows it
            await row.get_by_role("link", name=number).click()
            await expect(page).to_have_url(base + f"/portal/quotes/{number}")
            await expect(page.get_by_role("heading", level=1)).to_have_text(f"Quotation {number}")
            badge = page.locator(".page-head [data-status]")
            await expect(badge).to_have_text("Awaiting your answer")
            await expect(page.locator(".document")).to_contain_text(LAMP)
            await expect(page.get_by_test_id("document-total")).to_have_text(TOTAL)
            await expect(page.locator("[data-action=decline]")).to_have_text("Decline…")
            await shot(page, "02-sent-quote")

            # ---------------------------------------------------------------- 3. accept: the order is confirmed
            await page.get_by_role("button", name="Accept quote").click()
            await expect(page).to_have_url(base + f"/portal/quotes/{number}")
            await expect(page.locator(".flash-success")).to_have_text(f"Accepted: {number} is now confirmed.")
            await expect(badge).to_have_text("Confirmed")
            await expect(page.get_by_role("heading", level=1)).to_have_text(f"Order {number}")
            await expect(page.get_by_role("button", name="Accept quote")).to_have_count(0)
            await expect(page.locator("[data-action=decline]")).to_have_count(0)
            await shot(page, "03-confirmed")

            # ---------------------------------------------------------------- 4. back on the start page
            await page.get_by_role("link", name="Your orders").click()
            await expect(row).to_contain_text("Confirmed")
            await expect(page.get_by_test_id("to-answer")).to_have_text("0")
            await expect(page.get_by_test_id("in-progress")).to_have_text("1")
            invoice = page.locator("#portal-invoices tbody tr")
            await expect(invoice).to_have_count(1)
            await expect(invoice.first).to_contain_text(number)
            await expect(invoice.first.locator("td").nth(6)).to_have_text(TOTAL)  # open
            await expect(page.get_by_test_id("amount-due")).to_have_text(TOTAL)
            await shot(page, "04-home-after")
            await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()

    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert (order.status, order.accepted_by) == ("confirmed", CONTACT)
