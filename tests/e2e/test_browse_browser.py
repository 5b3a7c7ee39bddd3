"""A clerk's day in a real browser: log in, find a product, check its stock, browse stock, customers and
suppliers, log out. Screenshots of each key page are kept (see the `screenshots` fixture)."""

from __future__ import annotations

import re

import pytest

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the fixtures skip these tests and say why (and fail them under CI=true)
    Page = expect = None

pytestmark = pytest.mark.e2e


def log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def nav(page: Page, name: str):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def test_browse_products_stock_customers_and_suppliers(page: Page, live_server, shot):
    sample = live_server.sample

    # Anonymous: sent to the login page, then back to where they wanted to go.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    shot("01-login")
    log_in(page, live_server.username, live_server.password)
    expect(page).to_have_url(live_server.url + "/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_test_id("count-products")).not_to_have_text("0")
    expect(nav(page, "Import")).to_have_count(0)  # a sales clerk is not an admin
    shot("02-dashboard")

    # Find a product by SKU from the dashboard's search box.
    page.get_by_placeholder("Find a product by SKU or name").fill(sample.sku)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"/products\?q="))
    rows = page.locator("#products-table tbody tr")
    expect(rows.first).to_contain_text(sample.sku)
    shot("03-products-search")

    # Open it: its stock per warehouse is there.
    page.get_by_role("link", name=sample.sku, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(sample.product_name)
    stock = page.locator("#stock-per-warehouse")
    expect(stock).to_contain_text(sample.warehouse_code)
    expect(stock.locator("thead")).to_contain_text("Available")
    shot("04-product")

    # Sorting by a column header changes the order in the address and the table.
    nav(page, "Products").click()
    page.locator("#products-table thead").get_by_role("link", name="List price").click()
    expect(page).to_have_url(re.compile(r"sort=list_price"))
    expect(page.locator('#products-table th[aria-sort="ascending"]')).to_contain_text("List price")

    # Stock by warehouse: pick the sample's warehouse.
    nav(page, "Stock").click()
    expect(page.locator("#warehouse-summary")).to_contain_text(sample.warehouse_code)
    page.get_by_label("Warehouse").select_option(label=f"{sample.warehouse_code} · {sample.warehouse_name}")
    page.get_by_label("Product").fill(sample.sku)
    page.get_by_role("button", name="Show stock").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(sample.warehouse_name)
    expect(page.locator("#stock-table tbody tr").first).to_contain_text(sample.sku)
    shot("05-stock")

    # Customers, and one customer's page.
    nav(page, "Customers").click()
    expect(page.locator("#customers-table tbody tr").first).to_be_visible()
    shot("06-customers")
    page.get_by_role("link", name=sample.customer_code, exact=True).click()
    expect(page.locator(".breadcrumb")).to_contain_text(sample.customer_code)
    expect(page.get_by_text("Credit limit").first).to_be_visible()
    shot("07-customer")

    # Suppliers, and one supplier's offers.
    nav(page, "Suppliers").click()
    expect(page.locator("#suppliers-table tbody tr").first).to_be_visible()
    shot("08-suppliers")
    page.get_by_role("link", name=sample.supplier_code, exact=True).click()
    expect(page.locator("#offers-table tbody tr").first).to_contain_text("day")
    shot("09-supplier")

    # An unknown id is a proper page, not an error dump.
    response = page.goto("/products/999999")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_contain_text("No product")

    # Log out: back on the login page, and the pages are closed again.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(live_server.url + "/login")
    page.goto("/customers")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fcustomers$"))


def test_wrong_password_shows_the_error(page: Page, live_server, shot):
    page.goto("/login")
    log_in(page, live_server.username, "not-the-password")
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile("invalid username or password", re.I))
    expect(page.get_by_label("Username")).to_have_value(live_server.username)
    shot("10-login-error")
    # And the right password still works from the same page.
    page.get_by_label("Password").fill(live_server.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
