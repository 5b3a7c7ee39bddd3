"""The customer portal's demo login (scripts/demo_orders.py ensure_demo_contact): on the demo data it makes
buyer.muster once, a contact with the customer role and no other, of the customer the demo quotes are for (the
sent one among them), who logs in with the README's demo password and lands in the portal.

The demo quotes are written as `make run` writes them before the processes take them further (write_quotes; no
Temporal needed for the rows)."""

from __future__ import annotations

import re

from markupsafe import escape
from sqlalchemy import func, select
from sqlmodel import Session

from models.demo import load_demo_data
from models.masterdata import Customer
from models.sales import SalesOrder
from models.users import Group, User, UserGroup
from scripts.demo_orders import CONTACT_USERNAME, ensure_demo_contact, write_quotes
from tests.api.test_quotes_api import Clients, build_app
from tests.data.test_demo import SMALL

README_PASSWORD = "tradeflow-demo"  # README "Demo logins"


def contact_rows(engine) -> tuple[int, int]:
    with Session(engine) as s:
        return (s.scalar(select(func.count()).select_from(User)), s.scalar(select(func.count()).select_from(UserGroup)))


async def test_the_demo_contact_is_made_once_for_the_quotes_customer_and_logs_into_the_portal(engine, sqlite_url):
    load_demo_data(engine, scale=SMALL)
    code = ensure_demo_contact(engine)  # as ensure_demo_orders runs it: the contact first, then the quotes
    made = dict((plan.goal, number) for plan, number in write_quotes(engine))
    assert code is not None

    before = contact_rows(engine)
    assert ensure_demo_contact(engine) is None  # a second run changes nothing
    assert contact_rows(engine) == before

    with Session(engine) as s:
        contact = s.scalars(select(User).where(User.username == CONTACT_USERNAME)).one()
        groups = s.scalars(select(Group.name).join(UserGroup, UserGroup.group_id == Group.id)
                           .where(UserGroup.user_id == contact.id)).all()
        customer = s.get(Customer, contact.customer_id)
        quotes = dict(s.execute(select(SalesOrder.number, SalesOrder.customer_id)
                                .where(SalesOrder.number.in_(made.values()))).all())
        customer_name = customer.name
    assert groups == ["customer"] and contact.active
    assert customer.code == code
    # The quote that waits for the customer's answer (and every other but the credit hold) is this customer's.
    assert quotes[made["sent"]] == contact.customer_id
    assert sorted(goal for goal, number in made.items() if quotes[number] == contact.customer_id) == [
        "approval", "confirmed", "delivered", "draft", "sent"]

    app = build_app(engine, sqlite_url, temporal_address="127.0.0.1:9")
    clients = Clients(app, engine)
    try:
        browser = clients._client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', (await browser.get("/login")).text).group(1)
        login = await browser.post("/login", data={"username": CONTACT_USERNAME, "password": README_PASSWORD,
                                                   "csrf_token": token, "next": "/"})
        assert login.status_code == 303 and login.headers["location"] == "/portal", login.text
        portal = await browser.get("/portal")
        assert portal.status_code == 200 and str(escape(customer_name)) in portal.text
    finally:
        await clients.close()
