"""Purchase orders through the API (/api/v1/purchase-orders) and the pages (/purchase-orders): the list with its
state, supplier and origin filters and paging, one order with its lines, 404s, 422s, and who may read them (buyers
and the warehouse; not sales, not anonymous callers). The orders are made by quote to cash in the data layer
(models/orders.py, models/purchasing.py), on the sales world, without a workflow engine."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from models import orders
from models.masterdata import Product
from models.setup import ensure_role_groups
from models.users import User, UserGroup
from tests.api.test_quotes_api import get_json, loc, offline  # noqa: F401 (fixtures)
from tests.data.test_orders import confirm, line, quote, run, ship
from tests.data.test_purchasing import add_supplier
from tests.sales_world import DROP, LAMP, SCARCE

TODAY = date.today()
BUYER = "paul.purchasing"


def add_buyer(engine) -> None:
    with Session(engine) as s, s.begin():
        group = ensure_role_groups(s)["purchasing"]
        user = User(username=BUYER, full_name="Paul Purchasing", email="paul@tradeflow.test", password_hash="!")
        s.add(user)
        s.flush()
        s.add(UserGroup(user_id=user.id, group_id=group.id))


def purchasing_world(engine) -> dict[str, str]:
    """Four purchase orders: PO-000001 drop-ship received, PO-000002 drop-ship cancelled with its order,
    PO-000003 the ELX request for quotation (3 SCARCE short), PO-000004 the LUX one (5 LAMP short)."""
    add_buyer(engine)
    with Session(engine) as s:
        products = dict(s.execute(select(Product.sku, Product.id)).all())
    add_supplier(engine, "S-ELX", offers=((products[DROP], "140.00", "1", 5), (products[SCARCE], "55.00", "1", 7)))
    add_supplier(engine, "S-LUX", offers=((products[LAMP], "27.50", "1", 12),))
    shipped = quote(engine, line(DROP, "2", drop_ship=True))
    confirm(engine, shipped)
    ship(engine, run(engine, orders.create_shipment, shipped, 1, today=TODAY).shipment_number)
    cancelled = quote(engine, line(DROP, "1", drop_ship=True))
    confirm(engine, cancelled)
    run(engine, orders.create_shipment, cancelled, 1, today=TODAY)
    run(engine, orders.cancel_order, cancelled, actor="sam.sales", reason="not needed", today=TODAY)
    short = quote(engine, line(SCARCE, "8"), line(LAMP, "25"), customer="C-2000")
    confirm(engine, short)
    run(engine, orders.reserve_order, short)
    return {"shipped": shipped, "cancelled": cancelled, "short": short}


def numbers(page: dict) -> list[str]:
    return [i["number"] for i in page["items"]]


async def test_list_filters_paging_detail_and_refusals(offline):
    world = purchasing_world(offline.engine)
    buyer = offline.api(BUYER)

    page = await get_json(buyer, "/api/v1/purchase-orders")
    assert (page["total"], page["sort"]) == (4, "-created")
    assert numbers(page) == ["PO-000004", "PO-000003", "PO-000002", "PO-000001"]
    by_number = {i["number"]: i for i in page["items"]}
    first = by_number["PO-000001"]
    assert (first["state"], first["supplier_code"], first["origin"], first["drop_ship"], first["destination_code"],
            first["line_count"], D(first["amount_total"])) == (
        "received", "S-ELX", world["shipped"], True, "C-1000", 1, D("280.00"))
    rfq = by_number["PO-000003"]
    assert (rfq["state"], rfq["supplier_code"], rfq["origin"], rfq["drop_ship"], rfq["destination_code"],
            D(rfq["amount_total"])) == ("draft", "S-ELX", world["short"], False, "WH", D("165.00"))
    assert (by_number["PO-000002"]["state"], by_number["PO-000004"]["supplier_code"]) == ("cancelled", "S-LUX")

    assert numbers(await get_json(buyer, "/api/v1/purchase-orders?state=draft")) == ["PO-000004", "PO-000003"]
    assert numbers(await get_json(buyer, "/api/v1/purchase-orders?supplier=S-LUX")) == ["PO-000004"]
    assert numbers(await get_json(buyer, f"/api/v1/purchase-orders?origin={world['cancelled']}")) == ["PO-000002"]
    assert numbers(await get_json(buyer, "/api/v1/purchase-orders?state=draft&supplier=S-LUX")) == ["PO-000004"]
    assert numbers(await get_json(buyer, "/api/v1/purchase-orders?sort=number")) == [
        "PO-000001", "PO-000002", "PO-000003", "PO-000004"]
    paged = await get_json(buyer, "/api/v1/purchase-orders?sort=number&limit=3&offset=2")
    assert (numbers(paged), paged["total"], paged["offset"], paged["limit"]) == (
        ["PO-000003", "PO-000004"], 4, 2, 3)
    assert (await get_json(buyer, "/api/v1/purchase-orders?supplier=S-NONE"))["total"] == 0

    bad = await buyer.get("/api/v1/purchase-orders?state=lost&limit=0&sort=colour")
    assert bad.status_code == 422
    assert sorted(loc(bad)) == [["query", "limit"], ["query", "sort"], ["query", "state"]]

    detail = await get_json(buyer, "/api/v1/purchase-orders/PO-000001")
    assert (detail["state"], detail["shipment_number"], detail["expected_date"]) == (
        "received", f"SHP-{world['shipped']}-1", str(TODAY + timedelta(days=5)))
    assert [(ln["line_no"], ln["sku"], D(ln["quantity"]), D(ln["unit_cost"]), D(ln["subtotal"]),
             D(ln["qty_received"]), ln["sales_order_line_no"]) for ln in detail["lines"]] == [
        (1, DROP, D("2"), D("140.0000"), D("280.00"), D("2"), 1)]
    rfq_detail = await get_json(buyer, "/api/v1/purchase-orders/PO-000003")
    assert [(ln["sku"], D(ln["quantity"]), ln["demand_key"], ln["sales_order_line_no"])
            for ln in rfq_detail["lines"]] == [(SCARCE, D("3"), f"{world['short']}/L1", None)]
    missing = await buyer.get("/api/v1/purchase-orders/PO-999999")
    assert missing.status_code == 404 and "PO-999999" in missing.json()["detail"]

    # The warehouse reads them too; sales does not; nobody anonymous does.
    assert (await get_json(offline.api("walter.warehouse"), "/api/v1/purchase-orders"))["total"] == 4
    for url in ("/api/v1/purchase-orders", "/api/v1/purchase-orders/PO-000001"):
        assert (await offline.api("sam.sales").get(url)).status_code == 403
        assert (await offline._client().get(url)).status_code == 401


async def test_pages_list_detail_and_the_link_from_the_sales_order(offline):
    world = purchasing_world(offline.engine)
    buyer = await offline.browser(BUYER)

    listing = await buyer.get("/purchase-orders")
    assert listing.status_code == 200
    assert 'href="/purchase-orders" aria-current="page">Purchasing</a>' in listing.text  # the nav link
    for number in ("PO-000001", "PO-000002", "PO-000003", "PO-000004"):
        assert f'data-number="{number}"' in listing.text
    drafts = await buyer.get("/purchase-orders?state=draft&supplier=S-ELX")
    assert 'data-number="PO-000003"' in drafts.text and 'data-number="PO-000004"' not in drafts.text
    assert (await buyer.get("/purchase-orders?state=lost&page=abc&sort=colour&per_page=7")).status_code == 200

    page = await buyer.get("/purchase-orders/PO-000001")
    assert page.status_code == 200
    for expected in ("PO-000001 · Supplier S-ELX", "drop-ship", "Elektro Muster GmbH", "140.0000", "280.00",
                     f"SHP-{world['shipped']}-1", world["shipped"]):
        assert expected in page.text, expected
    missing = await buyer.get("/purchase-orders/PO-999999")
    assert missing.status_code == 404 and "No purchase order" in missing.text

    sales = await offline.browser("sam.sales")
    refused = await sales.get("/purchase-orders")
    assert refused.status_code == 403 and "You may not see purchase orders" in refused.text
    assert (await sales.get("/purchase-orders/PO-000001")).status_code == 403
    assert 'href="/purchase-orders"' not in (await sales.get("/orders")).text  # no nav link without the role
    anonymous = await offline._client().get("/purchase-orders")
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]

    # The sales order page links to its drop-ship purchase orders for those who may read them.
    walter = await offline.browser("walter.warehouse")
    order_page = await walter.get(f"/orders/{world['shipped']}")
    assert order_page.status_code == 200
    assert f'href="/purchase-orders?origin={world["shipped"]}" data-testid="purchase-orders-link"' in order_page.text
    manager_view = await (await offline.browser("maria.manager")).get(f"/orders/{world['shipped']}")
    assert manager_view.status_code == 200 and 'data-testid="purchase-orders-link"' not in manager_view.text
    linked = await walter.get(f"/purchase-orders?origin={world['shipped']}")
    assert 'data-number="PO-000001"' in linked.text and 'data-number="PO-000002"' not in linked.text
