"""An approver's day in a real browser, against real approval chains: mia.manager logs in, opens her groups'
unclaimed tasks, opens a quote's task, reads the request and approves it; the task leaves her list; carl.cfo logs
in and finds the CFO step of the same quote waiting in his inbox.

uvicorn serves the app on the test's own event loop (where the Temporal test server's client and the worker live),
and the browser is driven with Playwright's async API on that loop too. Screenshots go to the `screenshots`
folder (tests/e2e/conftest.py; $TRADEFLOW_SCREENSHOTS keeps them).
"""

from __future__ import annotations

import asyncio
import re
import socket
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlmodel import Session

from api.main import create_app
from config import Settings
from models.approvals import HumanTask
from models.users import User, hash_password
from tests.approval_world import publish_policy, two_step_quote_policy
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.approval_rules import RequestFacts
from workflows.contracts import ApprovalChainInput, approval_id

pytestmark = pytest.mark.e2e

PASSWORD = "approver-password-1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

QUOTES = [
    # number, customer, discount %, lines (sku, description, qty, uom, list, net unit), margin %
    ("Q-000311", "Elektro Nord GmbH", "25", [("CBL-NYM-3x1.5", "NYM-J 3x1.5 mm² installation cable", "500", "m",
                                               "1.20", "0.90"),
                                              ("SW-LS990-WS", "LS 990 switch, white", "120", "pc", "14.80",
                                               "11.10")], "14.2"),
    ("Q-000312", "Haustechnik Bauer KG", "22", [("LED-PANEL-62", "LED panel 62x62, 36 W", "80", "pc", "49.00",
                                                  "38.22")], "17.9"),
    ("Q-000313", "Stadtwerke Fürth", "12", [("CBL-NYY-5x16", "NYY-J 5x16 mm² power cable", "1200", "m", "21.50",
                                              "18.92")], "21.4"),
]


def _details(customer: str, discount: str, lines, margin: str) -> tuple[dict, D]:
    rows, total = [], D(0)
    for sku, text, qty, uom, list_price, net_unit in lines:
        net = (D(qty) * D(net_unit)).quantize(D("0.01"))
        total += net
        rows.append({"sku": sku, "description": text, "qty": qty, "uom": uom, "list_price": list_price,
                     "unit_price": net_unit, "discount_percent": discount, "net": str(net)})
    exposure = D("31250.00") + D("4100.00") + total
    return {
        "customer": {"name": customer, "segment": "installer", "payment_term": "Net 30"},
        "lines": rows,
        "discount_percent": discount,
        "margin_percent": margin,
        "credit": {"limit": "50000.00", "open_receivables": "31250.00", "open_orders": "4100.00",
                   "this_quote": str(total), "exposure": str(exposure), "available": str(D("50000.00") - exposure)},
    }, total


async def _start_quotes(client, task_queue: str) -> list[str]:
    keys = []
    for number, customer, discount, lines, margin in QUOTES:
        details, total = _details(customer, discount, lines, margin)
        key = f"quote:{number}"
        request = ApprovalChainInput(
            request_key=key, kind="quote", document_ref=number, title=f"Quote {number} for {customer}",
            requester="sam.sales", details=details, branch="NBG",
            facts=RequestFacts(amount=total, discount_percent=D(discount), margin_percent=D(margin),
                               requester="sam.sales"),
        )
        await client.start_workflow(ApprovalChainWorkflow.run, request, id=approval_id(key), task_queue=task_queue)
        keys.append(f"{key}/step1/round1")
    return keys


async def _rows_exist(engine, task_keys: list[str], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with Session(engine) as s:
                found = set(s.scalars(select(HumanTask.task_key).where(HumanTask.task_key.in_(task_keys))))
            if found == set(task_keys):
                return
            await asyncio.sleep(0.05)


async def _serve(app):
    """uvicorn on this loop, on a port the OS picked; returns (base url, server, task)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(15):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, task, sock


async def test_approver_approves_in_the_browser_and_the_cfo_gets_the_next_step(
    chromium_path, screenshots, temporal_env, worker, people_engine, sqlite_url
):
    from playwright.async_api import async_playwright, expect

    password_hash = hash_password(PASSWORD)
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        for user in s.scalars(select(User).where(User.username.in_(["mia.manager", "carl.cfo"]))):
            user.password_hash = password_hash
    keys = await _start_quotes(temporal_env.client, worker)
    await _rows_exist(people_engine, keys)
    target = keys[0]  # Q-000311: 25 % discount, so the CFO must approve after the sales manager
    cfo_step = target.replace("/step1/", "/step2/")

    app = create_app(Settings(database_url=sqlite_url, app_env="test", secret_key="inbox-e2e-secret-0123456789"))
    app.state.engine.dispose()
    app.state.engine = people_engine
    app.state.temporal_client = temporal_env.client  # updates go to the existing workflow ids
    base, server, serving, sock = await _serve(app)

    async def shot(page, name: str) -> None:
        await page.screenshot(path=str(screenshots / f"inbox-{name}.png"), full_page=True)

    async def log_in(page, username: str) -> None:
        await page.goto(base + "/inbox")
        await expect(page).to_have_url(re.compile(r"/login\?next=%2Finbox$"))
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(base + "/inbox")

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                                       args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 1366, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)

            # mia: her groups' unclaimed tasks, with counts on the tabs.
            await log_in(page, "mia.manager")
            await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
            await page.get_by_test_id("tab-group_unclaimed").click()
            await expect(page.get_by_test_id("count-group_unclaimed")).to_have_text("3")
            rows = page.locator("#inbox-table tbody tr.task-row")
            await expect(rows).to_have_count(3)
            await shot(page, "01-unclaimed")

            # The task page: the request in full, why it came to her, and the decision form.
            await page.get_by_role("link", name="Quote Q-000311 for Elektro Nord GmbH").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Quote Q-000311 for Elektro Nord GmbH")
            await expect(page.locator("#details-lines")).to_contain_text("NYM-J 3x1.5 mm² installation cable")
            await expect(page.locator("#section-credit")).to_contain_text("Exposure")
            await expect(page.locator("#why")).to_contain_text("discount>10")
            await shot(page, "02-task")

            await page.get_by_label("Comment").fill("Margin holds at 14 %; customer pays on time.")
            await page.get_by_test_id("approve").click()
            # Back on the list she came from: the task has left it, the count went down.
            await expect(page).to_have_url(re.compile(r"/inbox\?view=group_unclaimed$"))
            await expect(page.locator(".flash-success")).to_contain_text("Approved: Q-000311 (Sales manager approval)")
            await expect(page.locator(f'tr[data-task-key="{target}"]')).to_have_count(0)
            await expect(rows).to_have_count(2)
            await expect(page.get_by_test_id("count-group_unclaimed")).to_have_text("2")
            await expect(page.get_by_test_id("count-completed_by_me")).to_have_text("1")
            await shot(page, "03-after-approve")

            # carl: the CFO step of the same quote waits in his inbox.
            await page.get_by_role("button", name="Log out").click()
            await log_in(page, "carl.cfo")
            await page.get_by_test_id("tab-group_unclaimed").click()
            cfo_row = page.locator(f'tr[data-task-key="{cfo_step}"]')
            for _ in range(50):  # the chain opens the next step a moment after the decision
                if await cfo_row.count():
                    break
                await asyncio.sleep(0.2)
                await page.reload()
            await expect(cfo_row).to_contain_text("CFO approval")
            await expect(cfo_row).to_contain_text("Quote Q-000311 for Elektro Nord GmbH")
            await shot(page, "04-cfo-inbox")
            await cfo_row.get_by_role("link", name="Quote Q-000311 for Elektro Nord GmbH").click()
            chain = page.locator("#chain")
            await expect(chain).to_contain_text("Sales manager approval")
            await expect(chain).to_contain_text("mia.manager")
            await expect(chain).to_contain_text("Margin holds at 14 %")
            await shot(page, "05-cfo-task")
            await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()

    with Session(people_engine) as s:
        first = s.scalars(select(HumanTask).where(HumanTask.task_key == target)).one()
        assert (first.status, first.outcome, first.completed_by) == ("completed", "approved", "mia.manager")
