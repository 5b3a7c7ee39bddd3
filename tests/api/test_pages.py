"""The browsing pages, server side: each renders for a logged-in user, anonymous visitors go to the login page,
search, filters, sorting and paging really narrow the rows, and an unknown id is a 404 page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session, SQLModel

from config import Settings
from models.accounting import LineSpec, post_entry
from models.common import BackorderPreference, ValuationMethod
from models.inventory import MoveRequest, post_move, reserve
from models.masterdata import Address, Customer, Pricelist, ReorderRule, Supplier, SupplierOffer
from models.setup import create_base_setup, create_category, create_product, create_warehouse
from models.db import make_engine
from models.users import User, UserGroup, hash_password
from ui import format_date, format_days, format_money, format_percent, format_qty, format_unit_cost, humanize, label

PASSWORD = "correct horse battery staple"
FILLERS = 60  # more than a page of 50, so paging has something to do


@dataclass
class World:
    cable_id: int
    switch_id: int
    inactive_id: int
    main_wh_id: int
    second_wh_id: int
    customer_id: int
    supplier_id: int
    cables_category_id: int


def build_world(engine) -> World:
    """Two warehouses, a category tree, products with stock, reservations, offers and reorder rules, customers,
    suppliers and a user in the sales group."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        base = create_base_setup(session, warehouse_code="NBG", bins=("A-01-01", "A-01-02"))
        second = create_warehouse(session, base.branch, "MUC", "Munich depot", ("B-01-01",))
        uoms = base.uoms
        cables = create_category(session, "Cables", accounts=base.accounts)
        install = create_category(session, "Installation cable", cables, accounts=base.accounts)
        switches = create_category(session, "Switches", accounts=base.accounts)
        cable = create_product(
            session, "CAB-NYM-3X15", install, uoms["m"], name="NYM-J 3x1.5 mm² installation cable",
            purchase_uom=uoms["drum 500 m"], list_price=Decimal("1.25"), cost=Decimal("0.62"),
        )
        switch = create_product(
            session, "SW-ROCKER-WHT", switches, uoms["pc"], name="Rocker switch, pure white",
            purchase_uom=uoms["box 10"], list_price=Decimal("4.90"), cost=Decimal("2.10"),
            valuation=ValuationMethod.avco,
        )
        inactive = create_product(session, "OLD-DIMMER-1", switches, uoms["pc"], name="Rotary dimmer (discontinued)")
        inactive.active = False
        for n in range(1, FILLERS + 1):
            create_product(session, f"FIL-{n:03d}", switches, uoms["pc"], name=f"Filler socket {n:03d}",
                           list_price=Decimal(n), cost=Decimal(n) / 2)
        session.flush()

        supplier_loc = base.locations.suppliers.id
        bins = base.warehouse.bins
        post_move(session, MoveRequest("T/1", cable.id, Decimal("1500"), supplier_loc, bins["A-01-01"].id))
        post_move(session, MoveRequest("T/2", cable.id, Decimal("250.5"), supplier_loc, second.bins["B-01-01"].id))
        post_move(session, MoveRequest("T/3", switch.id, Decimal("40"), supplier_loc, bins["A-01-02"].id))
        post_move(session, MoveRequest("T/4", switch.id, Decimal("7"), supplier_loc, base.warehouse.quarantine.id))
        reserve(session, demand_key="SO-1/1", product_id=cable.id, warehouse_id=base.warehouse.warehouse.id,
                quantity=Decimal("300"))

        pricelist = Pricelist(name="Contractors 2026")
        session.add(pricelist)
        session.flush()
        acme = Customer(code="C-00042", name="Acme Elektro <Bau> GmbH", segment="contractor",
                        pricelist_id=pricelist.id, payment_term_id=base.payment_terms["Net 30"].id,
                        credit_limit=Decimal("25000"), backorder_preference=BackorderPreference.ship_complete,
                        email="orders@acme.example")
        retail = Customer(code="C-00077", name="Lichthaus Retail", segment="retailer")
        session.add_all([acme, retail])
        session.flush()
        session.add(Address(customer_id=acme.id, kind="invoice", street="Hauptstraße 1", city="Fürth", postcode="90762"))

        supplier = Supplier(code="S-007", name="Kabelwerk Nord", default_lead_time_days=12,
                            payment_term_id=base.payment_terms["Net 45"].id)
        other = Supplier(code="S-010", name="Schalter & Co")
        session.add_all([supplier, other])
        session.flush()
        session.add_all([
            SupplierOffer(supplier_id=supplier.id, product_id=cable.id, price=Decimal("0.6125"),
                          min_qty=Decimal(500), pack_multiple=Decimal(500), lead_time_days=12),
            SupplierOffer(supplier_id=other.id, product_id=switch.id, price=Decimal("1.95"),
                          min_qty=Decimal(50), pack_multiple=Decimal(10), lead_time_days=4),
            ReorderRule(product_id=cable.id, warehouse_id=base.warehouse.warehouse.id, min_qty=Decimal("2000"),
                        max_qty=Decimal("5000"), qty_multiple=Decimal("500"), lead_days=12, supplier_id=supplier.id),
        ])
        # Open items: Acme owes 27,500 against a 25,000 limit; we owe Kabelwerk Nord 1,200.
        post_entry(session, source_key="test:opening:ar", entry_date=date(2026, 1, 1), lines=[
            LineSpec("1100", debit=Decimal("27500"), customer_id=acme.id),
            LineSpec("3900", credit=Decimal("27500")),
        ])
        post_entry(session, source_key="test:opening:ap", entry_date=date(2026, 1, 1), lines=[
            LineSpec("3900", debit=Decimal("1200")),
            LineSpec("2100", credit=Decimal("1200"), supplier_id=supplier.id),
        ])
        user = User(username="clerk", full_name="Clara Clerk", email="clara@example.com",
                    password_hash=hash_password(PASSWORD))
        session.add(user)
        session.flush()
        boss = User(username="boss", full_name="Bea Boss", email="bea@example.com",
                    password_hash=hash_password(PASSWORD))
        session.add(boss)
        session.flush()
        session.add_all([
            UserGroup(user_id=user.id, group_id=base.groups["sales"].id),
            UserGroup(user_id=boss.id, group_id=base.groups["admin"].id),
        ])
        return World(cable.id, switch.id, inactive.id, base.warehouse.warehouse.id, second.warehouse.id,
                     acme.id, supplier.id, cables.id)


@pytest.fixture(scope="module")
def app_and_world(tmp_path_factory):
    """One database for the module: the pages only read, so the tests can share it."""
    from api.main import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'pages.db'}"
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    world = build_world(engine)
    engine.dispose()
    return create_app(Settings(database_url=url, app_env="test")), world


@pytest.fixture
def world(app_and_world) -> World:
    return app_and_world[1]


@pytest.fixture
def client(app_and_world) -> Iterator[TestClient]:
    """A browser with no session."""
    with TestClient(app_and_world[0], base_url="http://testserver") as test_client:
        yield test_client


def login(client: TestClient, username: str = "clerk", password: str = PASSWORD):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"},
                       follow_redirects=False)


@pytest.fixture(scope="module")
def user_client(app_and_world) -> Iterator[TestClient]:
    """A browser logged in as the clerk, shared by the read-only tests (password hashing is slow on purpose)."""
    with TestClient(app_and_world[0], base_url="http://testserver") as test_client:
        response = login(test_client)
        assert response.status_code == 303, response.text
        yield test_client


def table(html: str, table_id: str) -> str:
    return html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]


def table_skus(html: str, table_id: str) -> list[str]:
    """The SKU links of one table, in page order."""
    return re.findall(r'<a class="code" href="/products/\d+">([^<]+)</a>', table(html, table_id))


def table_codes(html: str, table_id: str, kind: str) -> list[str]:
    return re.findall(rf'<a class="code" href="/{kind}/\d+">([^<]+)</a>', table(html, table_id))


# ------------------------------------------------------------------------------------------- access


PAGES = ["/", "/products", "/products/1", "/stock", "/customers", "/customers/1", "/suppliers", "/suppliers/1"]


@pytest.mark.parametrize("path", PAGES + ["/products?q=CAB&page=2"])
def test_anonymous_visitor_is_sent_to_login_with_the_page_to_return_to(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + quote(path, safe="")


def test_login_returns_to_the_page_asked_for(client, world):
    page = client.get(f"/products/{world.cable_id}")  # follows the redirect to the login form
    assert page.url.path == "/login"
    assert f'name="next" value="/products/{world.cable_id}"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token,
                                           "next": f"/products/{world.cable_id}"})
    assert response.status_code == 200
    assert response.url.path == f"/products/{world.cable_id}"
    assert "CAB-NYM-3X15" in response.text


def test_wrong_password_shows_the_error_on_the_login_page(client):
    response = login(client, password="not-the-password")
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "invalid username or password" in response.text
    assert 'value="clerk"' in response.text  # the username stays filled in


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_in_the_layout_for_a_logged_in_user(user_client, path):
    response = user_client.get(path)
    assert response.status_code == 200
    html = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert '<link rel="stylesheet" href="/static/app.css">' in html
    for link in ('href="/products"', 'href="/stock"', 'href="/customers"', 'href="/suppliers"', 'href="/docs"'):
        assert link in html
    assert "Clara Clerk" in html
    # Logging out is a POST carrying the session's CSRF token.
    form = re.search(r'<form method="post" action="/logout".*?</form>', html, re.S).group(0)
    assert re.search(r'name="csrf_token" value="[^"]{20,}"', form)
    assert 'href="/inbox"' in html and 'href="/out-of-office"' in html  # everyone has an inbox
    assert 'href="/policies"' not in html and 'href="/warehouse/shipments"' not in html  # not the clerk's work


def test_admins_see_every_area_in_the_main_nav(client):
    assert login(client, "boss").status_code == 303
    html = client.get("/").text
    for link in ('href="/inbox"', 'href="/orders"', 'href="/warehouse/shipments"', 'href="/policies"'):
        assert link in html


def test_logout_ends_the_session(client):
    assert login(client).status_code == 303
    html = client.get("/").text
    token = re.search(r'action="/logout".*?name="csrf_token" value="([^"]+)"', html, re.S).group(1)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/products", follow_redirects=False).status_code == 303


def test_static_stylesheet_is_served_and_loads_nothing_from_elsewhere(client):
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert "http" not in response.text and "@import" not in response.text and "url(" not in response.text


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("/products/999999", "product"),
        ("/products/not-a-number", "product"),
        ("/customers/999999", "customer"),
        ("/suppliers/999999", "supplier"),
    ],
)
def test_an_unknown_id_is_a_404_page(user_client, path, what):
    response = user_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert f"No {what}" in response.text
    assert "Log out" in response.text  # still inside the layout


# ------------------------------------------------------------------------------------------- dashboard


def test_dashboard_counts_and_warehouses(user_client):
    html = user_client.get("/").text
    assert re.search(r'data-testid="count-products">62<', html)  # 63 products, one inactive
    assert re.search(r'data-testid="count-customers">2<', html)
    assert re.search(r'data-testid="count-suppliers">2<', html)
    assert re.search(r'data-testid="count-warehouses">2<', html)
    # Valuation layers at cost: 1,750.5 m at 0.62 and 47 pc at 2.10.
    assert re.search(r'data-testid="stock-value">1,184.01<', html)
    assert "NBG warehouse" in html and "Munich depot" in html
    assert "Test Electrical GmbH" in html


# ------------------------------------------------------------------------------------------- products


def test_products_search_by_sku_prefix_and_name(user_client):
    skus = table_skus(user_client.get("/products", params={"q": "cab"}).text, "products-table")
    assert skus == ["CAB-NYM-3X15"]
    skus = table_skus(user_client.get("/products", params={"q": "white ROCKER"}).text, "products-table")
    assert skus == ["SW-ROCKER-WHT"]  # every word matches, in any order
    skus = table_skus(user_client.get("/products", params={"q": "white cable"}).text, "products-table")
    assert skus == []
    skus = table_skus(user_client.get("/products", params={"q": "sw- white"}).text, "products-table")
    assert skus == ["SW-ROCKER-WHT"]  # a SKU prefix and a word of the name


def test_products_search_treats_like_wildcards_literally(user_client):
    html = user_client.get("/products", params={"q": "%"}).text
    assert table_skus(html, "products-table") == []
    assert "No products match" in html


def test_products_category_filter_includes_subcategories(user_client, world):
    html = user_client.get("/products", params={"category": world.cables_category_id}).text
    assert table_skus(html, "products-table") == ["CAB-NYM-3X15"]
    assert "Showing <strong>1–1</strong> of <strong>1</strong> products" in html


def test_products_sorting_by_column(user_client):
    def first(sort):
        return table_skus(user_client.get("/products", params={"sort": sort}).text, "products-table")[0]

    assert first("sku") == "CAB-NYM-3X15"
    assert first("-sku") == "SW-ROCKER-WHT"
    assert first("-list_price") == "FIL-060"
    assert first("-available") == "CAB-NYM-3X15"
    assert first("nonsense") == "CAB-NYM-3X15"  # an unknown sort falls back to the default


def test_products_paging(user_client):
    first_page = user_client.get("/products").text
    skus = table_skus(first_page, "products-table")
    assert len(skus) == 50 and skus[0] == "CAB-NYM-3X15"
    assert "SW-ROCKER-WHT" not in skus
    assert "Showing <strong>1–50</strong> of <strong>63</strong> products" in first_page
    assert 'href="/products?page=2" rel="next"' in first_page

    second = user_client.get("/products", params={"page": 2}).text
    skus = table_skus(second, "products-table")
    assert len(skus) == 13 and skus[-1] == "SW-ROCKER-WHT" and "CAB-NYM-3X15" not in skus

    beyond = table_skus(user_client.get("/products", params={"page": 99}).text, "products-table")
    assert beyond == skus  # past the end shows the last page
    small = user_client.get("/products", params={"per_page": 25, "page": 3, "sort": "-sku"}).text
    assert len(table_skus(small, "products-table")) == 13
    # Links keep the other parameters.
    assert 'href="/products?sort=-sku&amp;per_page=25&amp;page=2" rel="prev"' in small


def test_product_detail_shows_units_prices_offers_and_stock_per_warehouse(user_client, world):
    html = user_client.get(f"/products/{world.cable_id}").text
    assert "NYM-J 3x1.5 mm² installation cable" in html
    assert "Cables / Installation cable" in html
    assert "1 drum 500 m = 500 m" in html
    assert "FIFO" in html and "50.4%" in html  # margin on list: (1.25 - 0.62) / 1.25

    stock = table(html, "stock-per-warehouse")
    rows = re.findall(r"<tr>(.*?)</tr>", stock, re.S)
    munich = next(r for r in rows if "Munich depot" in r)
    nbg = next(r for r in rows if "NBG warehouse" in r)
    cells = lambda row: re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)  # noqa: E731
    assert cells(nbg)[:3] == ["1,500", "300", "1,200"]
    assert cells(nbg)[3:6] == ["2,000", "5,000", "500"]  # reorder min, max, multiple
    assert "Below min" in nbg and "Kabelwerk Nord" in nbg
    assert cells(munich)[:3] == ["250.5", "0", "250.5"]
    assert "No reorder rule" in munich

    offers = table(html, "supplier-offers")
    assert "Kabelwerk Nord" in offers and "0.6125" in offers and "12 days" in offers
    assert "NBG/Stock/A-01-01" in table(html, "stock-by-location")


def test_product_detail_shows_stock_held_in_quarantine(user_client, world):
    html = user_client.get(f"/products/{world.switch_id}").text
    locations = table(html, "stock-by-location")
    assert "NBG/Quarantine" in locations and "Quarantine" in locations
    assert "AVCO" in html
    assert "Schalter &amp; Co" in table(html, "supplier-offers")


# ------------------------------------------------------------------------------------------- stock


def test_stock_by_warehouse(user_client, world):
    html = user_client.get("/stock").text
    assert table_skus(html, "stock-table") == ["CAB-NYM-3X15", "CAB-NYM-3X15", "SW-ROCKER-WHT"]
    summary = table(html, "warehouse-summary")
    assert "Munich depot" in summary and "NBG warehouse" in summary

    munich = user_client.get("/stock", params={"warehouse": world.second_wh_id}).text
    assert table_skus(munich, "stock-table") == ["CAB-NYM-3X15"]
    assert "250.5" in table(munich, "stock-table")
    assert "Stock · MUC Munich depot" in munich

    main = user_client.get("/stock", params={"warehouse": world.main_wh_id, "q": "SW"}).text
    rows = table(main, "stock-table")
    assert table_skus(main, "stock-table") == ["SW-ROCKER-WHT"]
    assert "CAB-NYM-3X15" not in rows
    # The quarantined 7 pieces are not sellable stock: on hand is the 40 in the bin.
    assert re.search(r'<td class="num ">40</td>', rows)


def test_stock_flags_lines_below_the_reorder_minimum(user_client, world):
    html = user_client.get("/stock", params={"warehouse": world.main_wh_id, "q": "CAB"}).text
    assert "Below min" in table(html, "stock-table")


def test_stock_with_an_unknown_warehouse_shows_all_warehouses(user_client):
    html = user_client.get("/stock", params={"warehouse": "999", "page": "x"}).text
    assert len(table_skus(html, "stock-table")) == 3


# ------------------------------------------------------------------------------------------- customers


def test_customers_search_segment_and_sort(user_client):
    html = user_client.get("/customers", params={"q": "acme"}).text
    assert table_codes(html, "customers-table", "customers") == ["C-00042"]
    html = user_client.get("/customers", params={"segment": "retailer"}).text
    assert table_codes(html, "customers-table", "customers") == ["C-00077"]
    html = user_client.get("/customers", params={"sort": "-credit_limit"}).text
    assert table_codes(html, "customers-table", "customers") == ["C-00042", "C-00077"]
    html = user_client.get("/customers", params={"sort": "credit_limit"}).text
    assert table_codes(html, "customers-table", "customers") == ["C-00077", "C-00042"]
    assert "25,000.00" in html and "Contractors 2026" in html and "Fürth" in html
    assert re.search(r'is-over"[^>]*>27,500.00<', html)  # receivables over the credit limit stand out
    html = user_client.get("/customers", params={"sort": "-receivable"}).text
    assert table_codes(html, "customers-table", "customers") == ["C-00042", "C-00077"]


def test_names_are_escaped(user_client, world):
    for html in (user_client.get("/customers").text, user_client.get(f"/customers/{world.customer_id}").text):
        assert "Acme Elektro &lt;Bau&gt; GmbH" in html
        assert "<Bau>" not in html


def test_customer_detail(user_client, world):
    html = user_client.get(f"/customers/{world.customer_id}").text
    for text in ("C-00042", "Contractor", "Net 30", "Contractors 2026", "25,000.00", "Wait and ship each order complete",
                 "Hauptstraße 1", "90762 Fürth", "orders@acme.example", "110% of the credit limit", "Over limit"):
        assert text in html, text
    assert re.search(r'data-testid="receivable">27,500.00<', html)


# ------------------------------------------------------------------------------------------- suppliers


def test_suppliers_search_and_offer_counts(user_client):
    html = user_client.get("/suppliers").text
    assert table_codes(html, "suppliers-table", "suppliers") == ["S-007", "S-010"]
    html = user_client.get("/suppliers", params={"q": "schalter"}).text
    assert table_codes(html, "suppliers-table", "suppliers") == ["S-010"]
    html = user_client.get("/suppliers", params={"sort": "-lead_time"}).text
    assert table_codes(html, "suppliers-table", "suppliers")[0] == "S-007"


def test_supplier_detail_lists_offers_with_lead_times(user_client, world):
    html = user_client.get(f"/suppliers/{world.supplier_id}").text
    offers = table(html, "offers-table")
    assert table_skus(html, "offers-table") == ["CAB-NYM-3X15"]
    assert "0.6125" in offers and "12 days" in offers and "drum 500 m" in offers
    assert "Net 45" in html
    assert re.search(r'data-testid="payable">1,200.00<', html)
    assert table_skus(user_client.get(f"/suppliers/{world.supplier_id}", params={"q": "zzz"}).text, "offers-table") == []


# ------------------------------------------------------------------------------------------- efficiency


@pytest.mark.parametrize("path", ["/products", "/stock", "/customers", "/suppliers", "/suppliers/1"])
def test_list_pages_use_a_fixed_number_of_queries(app_and_world, user_client, path):
    """No query per row: 25 rows and 200 rows cost the same number of statements."""
    engine = app_and_world[0].state.engine
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        user_client.get(path, params={"per_page": 25})
        few = len(statements)
        statements.clear()
        user_client.get(path, params={"per_page": 200})
        many = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert few == many


# ------------------------------------------------------------------------------------------- formatting


def test_display_filters():
    assert format_money(Decimal("1234.5")) == "1,234.50"
    assert format_money(Decimal("-0.005")) == "-0.01"
    assert format_money(None) == "\u2014"
    assert format_qty(Decimal("300.000")) == "300"
    assert format_qty(Decimal("1500")) == "1,500"
    assert format_qty(Decimal("12.500")) == "12.5"
    assert format_qty(Decimal("0.000")) == "0"
    assert format_unit_cost(Decimal("0.6125")) == "0.6125"
    assert format_unit_cost(Decimal("2.1")) == "2.1000"
    assert format_percent(Decimal("50.4")) == "50.4%"
    assert format_days(1) == "1 day" and format_days(12) == "12 days"
    assert format_date(date(2026, 3, 1)) == "2026-03-01"
    assert format_date(datetime(2026, 3, 1, 14, 5, 9)) == "2026-03-01 14:05"
    assert label(ValuationMethod.avco) == "AVCO" and label("ship_available").startswith("Ship what")
    assert humanize("ship_complete") == "Ship complete"


# ------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_every_page_renders_on_postgresql(pg_engine, pg_database_url):
    """The same pages over PostgreSQL (grouping, correlated subqueries and sorting differ between engines)."""
    from api.main import create_app

    world = build_world(pg_engine)
    app = create_app(Settings(database_url=pg_database_url, app_env="test"))
    paths = [
        "/",
        "/products?sort=-available&q=fil 01",
        f"/products?category={world.cables_category_id}",
        f"/products/{world.cable_id}",
        f"/stock?warehouse={world.main_wh_id}&q=SW",
        "/customers?sort=-receivable",
        "/customers?sort=city",
        f"/customers/{world.customer_id}",
        "/suppliers?sort=-offers",
        f"/suppliers/{world.supplier_id}?sort=-price",
    ]
    try:
        with TestClient(app) as client:
            assert login(client).status_code == 303
            for path in paths:
                assert client.get(path).status_code == 200, path
            html = client.get("/products", params={"q": "fil 01"}).text
            # Both words must match: "fil" (SKU prefix) and "01" (in "Filler socket 001", "... 010" to "... 019").
            assert table_skus(html, "products-table") == ["FIL-001"] + [f"FIL-{n:03d}" for n in range(10, 20)]
            assert client.get("/products/999999").status_code == 404
    finally:
        app.state.engine.dispose()


def test_an_unknown_page_answers_a_404_page_for_browsers_and_json_for_api_clients(user_client):
    page = user_client.get("/no-such-page", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "/no-such-page" in page.text and 'href="/"' in page.text  # a way back, in the layout
    api = user_client.get("/api/v1/no-such-thing", headers={"accept": "text/html"})
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    plain = user_client.get("/no-such-page")
    assert plain.status_code == 404 and plain.json() == {"detail": "Not Found"}
