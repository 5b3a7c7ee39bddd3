"""Quote to cash in a real browser, through the pages only, against a real Temporal dev server and worker.

sam.sales creates a quote for C-2000 (CAB-100 × 10 at 15 % off: 8.50 × 10 = 85.00 + 19 % VAT = 101.15) and
submits it; the quote policy sends it to a sales manager, and maria.manager approves it from her inbox; sam
records the customer's acceptance, the order is confirmed and a shipment appears (C-2000 asks about backorders,
but the stock suffices, so nothing is asked); walter.warehouse scans the SKU like a scanner (a wrong code is
refused and records nothing), then records picked, packed and shipped; the order is delivered and invoiced;
fiona.finance records the payment against the invoice and the order is done.

Each person has a browser context of their own (their own session cookie), as four people at four desks would.
The mechanics follow tests/e2e/test_inbox_browser.py: uvicorn serves the app on the test's event loop (where the
Temporal client and the worker live) and Playwright's async API drives chromium on that loop too. Screenshots go
to the `screenshots` folder (tests/e2e/conftest.py; $TRADEFLOW_SCREENSHOTS keeps them).
"""

from __future__ import annotations

import asyncio
import random
import re
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from api.main import create_app
from config import Settings
from models.approvals import HumanTask
from models.ledger import JournalLine
from models.sales import CustomerInvoice, CustomerPayment, NumberSequence, SalesOrder, Shipment
from models.stock import Quant
from models.users import User, hash_password
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.e2e.test_inbox_browser import CHROMIUM_ARGS, _serve
from tests.sales_world import CABLE, CASH_CUSTOMER, SalesWorld, build_sales_world_in

pytestmark = pytest.mark.e2e

PASSWORD = "orders-e2e-password-1"
PEOPLE = ("sam.sales", "maria.manager", "walter.warehouse", "fiona.finance")
WAIT = 30.0  # a guard against hanging while the process moves on, not a speed assertion

# The story's figures, worked out by hand: list 10.00, 15 % off => 8.50; × 10 = 85.00; VAT 19 % = 16.15.
QTY, DISCOUNT = "10", "15"
UNTAXED, TAX, TOTAL = "85.00", "16.15", "101.15"


def _world(engine) -> SalesWorld:
    """The sales world, the quote policy in force and the four people's passwords."""
    world = build_sales_world_in(engine)
    password_hash = hash_password(PASSWORD)
    with Session(engine) as s, s.begin():
        # RULE ORDER: above 10 % a sales manager approves, above 20 % the CFO as well, so 15 % asks one sales
        # manager and a quote without discount asks nobody.
        publish_policy(s, two_step_quote_policy())
        # Quote numbers are workflow ids (q2c:Q-...) on the dev server the whole test session shares: start at a
        # number of our own so this test never meets another test's process.
        s.add(NumberSequence(name="quote", prefix="Q-", next_value=random.randint(10**6, 10**9)))
        for user in s.scalars(select(User).where(User.username.in_(PEOPLE))):
            user.password_hash = password_hash
    return world


async def _reload_until(page, locator, text: str) -> None:
    """Reload until `locator` shows `text`: the page reads tables the workflow writes a moment later."""
    async with asyncio.timeout(WAIT):
        while True:
            if await locator.count() and text in await locator.first.inner_text():
                return
            await asyncio.sleep(0.2)
            await page.reload()


def _shipment(engine, number: str) -> Shipment | None:
    with Session(engine) as s:
        return s.scalars(select(Shipment).join(SalesOrder, SalesOrder.id == Shipment.order_id)
                         .where(SalesOrder.number == number)).first()


async def test_quote_to_cash_through_the_pages(chromium_path, screenshots, temporal_env, worker, people_engine,
                                               sqlite_url):
    from playwright.async_api import async_playwright, expect

    engine = people_engine
    world = _world(engine)
    app = create_app(Settings(database_url=sqlite_url, app_env="test", secret_key="orders-e2e-secret-0123456789",
                              temporal_task_queue=worker))
    app.state.engine.dispose()
    app.state.engine = engine
    app.state.temporal_client = temporal_env.client
    base, server, serving, sock = await _serve(app)

    async def shot(page, name: str) -> None:
        await page.screenshot(path=str(screenshots / f"orders-{name}.png"), full_page=True)

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                                       args=CHROMIUM_ARGS)

            async def desk(username: str, path: str):
                """A browser context of the person's own, logged in through the form, on `path`."""
                context = await browser.new_context(viewport={"width": 1366, "height": 900})
                page = await context.new_page()
                page.set_default_timeout(15_000)
                await page.goto(base + path)
                await expect(page).to_have_url(re.compile(r"/login\?next="))
                await page.get_by_label("Username").fill(username)
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Log in").click()
                await expect(page).to_have_url(base + path)
                return page

            # ---------------------------------------------------------------- 1. sam writes and submits the quote
            sam = await desk("sam.sales", "/orders/new")
            await expect(sam.get_by_role("heading", level=1)).to_have_text("New quote")
            await sam.get_by_role("combobox", name="Customer").fill(CASH_CUSTOMER)  # a datalist makes it a combobox
            await sam.get_by_label("SKU of line 1").fill(CABLE)
            await sam.get_by_label("Quantity of line 1").fill(QTY)
            await sam.get_by_label("Discount of line 1").fill(DISCOUNT)
            await shot(sam, "01-new-quote-form")
            await sam.get_by_role("button", name="Create quote").click()

            await expect(sam).to_have_url(re.compile(r"/orders/Q-\d+$"))
            number = sam.url.rsplit("/", 1)[-1]
            order_url = sam.url
            await expect(sam.locator(".flash-success")).to_contain_text(f"Quote {number} created.")
            await expect(sam.get_by_role("heading", level=1)).to_have_text(f"{number} · Cash & Carry Meier")
            badge = sam.locator(".page-head [data-status]")
            await expect(badge).to_have_text("Draft")
            line = sam.locator("#order-lines tbody tr")
            await expect(line).to_have_count(1)
            cells = line.first.locator("td")
            await expect(cells.nth(1)).to_have_text(CABLE)
            await expect(cells.nth(3)).to_contain_text("10")   # quantity
            await expect(cells.nth(4)).to_have_text("10.00")   # list price
            await expect(cells.nth(6)).to_have_text("15.0%")   # line discount
            await expect(cells.nth(7)).to_have_text(re.compile(rf"^{re.escape(UNTAXED)}\s*8\.50 / pc$"))  # net, unit net
            foot = sam.locator("#order-lines tfoot")
            for label, amount in (("Untaxed", UNTAXED), ("Tax", TAX), ("Total", TOTAL)):
                await expect(foot.get_by_role("row", name=f"{label} {amount}", exact=True)).to_be_visible()
            await expect(sam.get_by_test_id("total")).to_have_text(TOTAL)
            await expect(sam.get_by_test_id("discount")).to_have_text("15.0%")
            await shot(sam, "02-draft")

            await sam.get_by_role("button", name="Submit").click()
            await expect(sam.locator(".flash-success")).to_contain_text(f"Submitted: {number} is now pending approval.")
            await expect(badge).to_have_text("Pending approval")
            task_key = f"quote:{number}/step1/round1"
            approvals = sam.locator(f'#approval-tasks li[data-task-key="{task_key}"]')
            await _reload_until(sam, approvals, "Sales manager approval")
            await expect(approvals).to_contain_text("open")
            await shot(sam, "03-pending-approval")

            # ---------------------------------------------------------------- 2. maria approves from her inbox
            maria = await desk("maria.manager", "/inbox")
            await maria.get_by_test_id("tab-group_unclaimed").click()
            task_row = maria.locator(f'tr[data-task-key="{task_key}"]')
            await _reload_until(maria, task_row, f"Quote {number}")
            await expect(maria.get_by_test_id("count-group_unclaimed")).to_have_text("1")
            await shot(maria, "04-inbox")
            title = f"Quote {number} for Cash & Carry Meier ({CASH_CUSTOMER})"  # the customer's name, then code
            await task_row.get_by_role("link", name=title).click()
            await expect(maria.get_by_role("heading", level=1)).to_have_text(title)
            await expect(maria.get_by_test_id("amount")).to_contain_text(UNTAXED)
            await expect(maria.locator("#why")).to_contain_text("discount>10")
            await shot(maria, "05-inbox-task")
            await maria.get_by_label("Comment").fill("15 % for a cash customer is fine.")
            await maria.get_by_test_id("approve").click()
            await expect(maria).to_have_url(re.compile(r"/inbox\?view=group_unclaimed$"))
            await expect(maria.locator(".flash-success")).to_contain_text(f"Approved: {number}")
            await expect(maria.locator(f'tr[data-task-key="{task_key}"]')).to_have_count(0)
            await expect(maria.get_by_test_id("count-group_unclaimed")).to_have_text("0")
            await shot(maria, "06-inbox-after-approve")

            # ---------------------------------------------------------------- 3. sent; the customer accepts
            await sam.goto(order_url)
            await _reload_until(sam, badge, "Sent")
            await expect(approvals).to_contain_text("Approved")
            await expect(approvals).to_contain_text("maria.manager")
            await shot(sam, "07-sent")
            await sam.get_by_role("button", name="Customer accepted").click()
            await expect(sam.locator(".flash-success")).to_contain_text(f"Accepted: {number} is now confirmed.")
            await expect(badge).to_have_text("Confirmed")
            shipment_rows = sam.locator("#shipments tr[data-shipment]")
            await _reload_until(sam, shipment_rows, f"SHP-{number}-1")
            await expect(badge).to_have_text("Confirmed")
            # Stock suffices (100 on hand), so C-2000's "ask" preference asks nothing.
            await expect(sam.locator("#backorder-choice")).to_have_count(0)
            await expect(line.first.locator("td").nth(9)).to_have_text("10")  # reserved
            await expect(shipment_rows.first).to_contain_text(f"{CABLE} × 10")
            await shot(sam, "08-confirmed")
            shipment_number = await shipment_rows.first.get_attribute("data-shipment")

            # ---------------------------------------------------------------- 4. walter scans and ships
            walter = await desk("walter.warehouse", "/inbox")
            await walter.get_by_role("link", name="Shipping").click()
            await expect(walter).to_have_url(base + "/warehouse/shipments")
            listed = walter.locator(f'#shipments-table tr[data-shipment="{shipment_number}"]')
            await expect(listed).to_contain_text(number)
            await expect(listed).to_contain_text("Cash & Carry Meier")
            await listed.get_by_role("link", name=shipment_number).click()
            await expect(walter.get_by_role("heading", level=1)).to_have_text(shipment_number)
            scan = walter.locator("#scan-input")
            await expect(scan).to_be_focused()  # autofocus: the scanner types into it without a click
            confirm = walter.locator('button[data-step="picked"]')
            await expect(walter.get_by_test_id("missing")).to_have_text(f"Still to scan: {CABLE}")
            await expect(confirm).to_be_disabled()
            await shot(walter, "09-scan-page")
            status_before = _shipment(engine, number).status

            # A wrong code: a clear message, nothing counted, nothing recorded.
            await walter.keyboard.type("LAMP-999")
            await walter.keyboard.press("Enter")
            await expect(walter.locator('[data-error-for="code"]')).to_have_text("“LAMP-999” is not on this shipment.")
            await expect(walter.locator(f'#shipment-lines tr[data-sku="{CABLE}"]')).to_contain_text("not yet")
            await expect(walter.get_by_test_id("missing")).to_have_text(f"Still to scan: {CABLE}")
            await expect(confirm).to_be_disabled()
            await shot(walter, "10-scan-refused")
            assert _shipment(engine, number).status == status_before

            # The right code, typed like a scanner: the field has the focus again after the refusal.
            await expect(scan).to_be_focused()
            await walter.keyboard.type(CABLE)
            await walter.keyboard.press("Enter")
            await expect(walter.locator(f'#shipment-lines tr[data-sku="{CABLE}"]')).to_contain_text("✓ 1")
            await expect(walter.get_by_test_id("missing")).to_have_count(0)
            await expect(walter.locator('[data-error-for="code"]')).to_have_count(0)
            await shot(walter, "11-scanned")
            await expect(confirm).to_be_enabled()
            await confirm.click()
            await expect(walter.locator(".flash-success")).to_contain_text(f"Picked: {shipment_number}.")
            # The scans are not kept once the step is recorded; the line still reads as done, not "not yet".
            await expect(walter.locator(f'#shipment-lines tr[data-sku="{CABLE}"]')).to_contain_text("✓ picked")
            await walter.get_by_role("button", name="Confirm packed").click()
            await expect(walter.locator(".flash-success")).to_contain_text(f"Packed: {shipment_number}.")
            await walter.get_by_label("Tracking reference").fill("DHL-00340434161")
            await shot(walter, "12-ready-to-ship")
            await walter.get_by_role("button", name="Confirm shipped").click()
            await expect(walter).to_have_url(base + "/warehouse/shipments")
            await expect(walter.locator(".flash-success")).to_contain_text(f"Shipped: {shipment_number}.")
            await expect(walter.locator(f'tr[data-shipment="{shipment_number}"]')).to_have_count(0)

            await sam.goto(order_url)
            await _reload_until(sam, badge, "Delivered")
            invoice_rows = sam.locator("#invoices tr[data-invoice]")
            await _reload_until(sam, invoice_rows, TOTAL)
            shipped = sam.locator(f'#shipments tr[data-shipment="{shipment_number}"]')
            await expect(shipped).to_contain_text("Shipped")
            await expect(shipped).to_contain_text("DHL-00340434161")
            await expect(line.first.locator("td").nth(10)).to_have_text("10")  # delivered
            await expect(line.first.locator("td").nth(11)).to_have_text("10")  # invoiced
            await expect(invoice_rows).to_have_count(1)
            invoice_cells = invoice_rows.first.locator("td")
            await expect(invoice_cells.nth(4)).to_have_text(TOTAL)  # total
            await expect(invoice_cells.nth(5)).to_have_text(TOTAL)  # open
            await shot(sam, "13-delivered")
            invoice_number = await invoice_rows.first.get_attribute("data-invoice")

            # ---------------------------------------------------------------- 5. fiona records the payment
            fiona = await desk("fiona.finance", f"/orders/{number}")
            await expect(fiona.locator(".page-head [data-status]")).to_have_text("Delivered")
            await fiona.get_by_role("link", name="Record payment").click()
            await expect(fiona).to_have_url(base + f"/payments/new?customer={CASH_CUSTOMER}")
            await fiona.get_by_label("Bank reference").fill(f"BANK-{number}")
            await expect(fiona.get_by_role("combobox", name="Customer")).to_have_value(CASH_CUSTOMER)
            await fiona.get_by_label("Amount").fill(TOTAL)
            invoice_choice = fiona.get_by_label("Invoice (optional)")
            await expect(invoice_choice.locator(f'option[value="{invoice_number}"]')).to_contain_text(
                f"open {TOTAL}")
            await invoice_choice.select_option(invoice_number)
            await shot(fiona, "14-payment-form")
            await fiona.get_by_role("button", name="Record payment").click()
            await expect(fiona).to_have_url(base + "/payments/new")
            await expect(fiona.locator(".flash-success")).to_contain_text(
                f"Recorded: payment BANK-{number} of {TOTAL} from {CASH_CUSTOMER}.")
            await expect(fiona.locator(".flash-info")).to_contain_text(f"Orders told: {number}.")

            await fiona.goto(base + f"/orders/{number}")
            done_badge = fiona.locator(".page-head [data-status]")
            await _reload_until(fiona, done_badge, "Done")
            paid_card = fiona.locator(".card", has_text="Invoiced / paid")
            await expect(paid_card).to_contain_text(f"paid {TOTAL}")
            await expect(paid_card).not_to_contain_text("due")
            await expect(fiona.locator("#payments")).to_contain_text(f"BANK-{number}")
            await expect(fiona.locator("#payments")).to_contain_text(TOTAL)
            paid_invoice = fiona.locator(f'#invoices tr[data-invoice="{invoice_number}"] td')
            await expect(paid_invoice.nth(5)).to_have_text("0.00")
            await expect(paid_invoice.nth(6)).to_have_text("Paid")
            await expect(fiona.get_by_role("link", name="Record payment")).to_have_count(0)
            await shot(fiona, "15-done")
            await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()

    # The rows behind what the people saw.
    with Session(engine) as s:
        order = s.scalars(select(SalesOrder).where(SalesOrder.number == number)).one()
        assert (order.status, order.amount_total, order.amount_paid) == ("done", D(TOTAL), D(TOTAL))
        task = s.scalars(select(HumanTask).where(HumanTask.task_key == task_key)).one()
        assert (task.status, task.outcome, task.completed_by) == ("completed", "approved", "maria.manager")
        shipment = s.scalars(select(Shipment).where(Shipment.order_id == order.id)).one()
        assert (shipment.status, shipment.tracking_ref) == ("shipped", "DHL-00340434161")
        invoice = s.scalars(select(CustomerInvoice).where(CustomerInvoice.order_id == order.id)).one()
        assert (invoice.amount_total, invoice.amount_residual, invoice.status) == (D(TOTAL), D(0), "paid")
        payment = s.scalars(select(CustomerPayment).where(CustomerPayment.reference == f"BANK-{number}")).one()
        assert (payment.amount, payment.recorded_by) == (D(TOTAL), "fiona.finance")
        # 100 CAB-100 were received; 10 left for the customer and nothing stays reserved for the order.
        on_hand, reserved = s.execute(select(func.sum(Quant.quantity), func.sum(Quant.reserved))
                                      .where(Quant.product_id == world.product_id(CABLE),
                                             Quant.location_id == world.stock_location_id)).one()
        assert (D(on_hand), D(reserved)) == (D(90), D(0))
        debit, credit = s.execute(select(func.sum(JournalLine.debit), func.sum(JournalLine.credit))).one()
        assert D(debit) == D(credit) and D(debit) > 0
