"""Browser tests: a real uvicorn server on an OS-chosen port over a demo database, driven by Debian's chromium.

Without /usr/bin/chromium (or the playwright package) the tests skip and say why; under CI=true that is a
failure, because CI installs chromium (.ci/run). Screenshots of the key pages go to a temporary folder
(or to $TRADEFLOW_SCREENSHOTS when set), so a person can look at them.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

from config import Settings
from models.db import make_engine

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEMO_SCALE = 0.02
SERVER_START_TIMEOUT = 30.0


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = _missing_browser()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the browser tests to run: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@dataclass(frozen=True)
class Sample:
    """Demo rows the tests look for: a product with stock in a known warehouse, a customer, a supplier."""

    sku: str
    product_name: str
    warehouse_code: str
    warehouse_name: str
    customer_code: str
    supplier_code: str


@dataclass(frozen=True)
class LiveServer:
    url: str
    username: str
    password: str
    sample: Sample


def _pick_sample(engine) -> Sample:
    from models.common import LocationUsage
    from models.masterdata import Customer, Location, Product, Supplier, Warehouse
    from models.stock import Quant

    with Session(engine) as session:
        sku, name, code, wname = session.execute(
            select(Product.sku, Product.name, Warehouse.code, Warehouse.name)
            .join(Quant, Quant.product_id == Product.id)
            .join(Location, Location.id == Quant.location_id)
            .join(Warehouse, Warehouse.id == Location.warehouse_id)
            .where(Location.usage == LocationUsage.internal, Quant.quantity > 0, Product.active.is_(True))
            .order_by(Product.sku)
            .limit(1)
        ).one()
        customer = session.scalar(select(func.min(Customer.code)))
        supplier = session.scalar(select(func.min(Supplier.code)))
    return Sample(sku, name, code, wname, customer, supplier)


@pytest.fixture(scope="session")
def live_server(chromium_path, tmp_path_factory) -> Iterator[LiveServer]:
    """uvicorn serving the real app in a background thread, on a socket the OS gave a free port."""
    import uvicorn

    from api.main import create_app
    from models.demo import DEMO_LOGINS, DEMO_PASSWORD, load_demo_data

    url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'tradeflow-e2e.db'}"
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    load_demo_data(engine, scale=DEMO_SCALE)
    sample = _pick_sample(engine)
    engine.dispose()

    app = create_app(Settings(database_url=url, app_env="test"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    username = next(user for user, role in DEMO_LOGINS if role == "sales")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", username, DEMO_PASSWORD, sample)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    target = os.environ.get("TRADEFLOW_SCREENSHOTS")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot(page, screenshots):
    """shot("dashboard") saves a full-page screenshot of what the browser shows now."""

    def take(name: str) -> Path:
        path = screenshots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
