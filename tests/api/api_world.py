"""A small company for API tests, people in each role, and clients logged in as them.

Import the fixtures `api_world`, `api_app`, `login` and `anonymous` into a test module to use them.
`login("sam")` returns a TestClient with that user's session cookie and CSRF header set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.main import create_app
from config import Settings
from models.masterdata import Pricelist, Supplier
from models.setup import create_base_setup, create_category, create_product
from models.users import User, UserGroup, hash_password

PASSWORD = "s3cret-enough-pass"
# username -> roles
PEOPLE: dict[str, tuple[str, ...]] = {
    "ada": ("admin",),
    "sam": ("sales",),
    "cora": ("credit-controller",),
    "pia": ("purchasing",),
    "fin": ("finance",),
    "wes": ("warehouse",),
}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')

@lru_cache
def _hash(password: str) -> str:
    return hash_password(password)  # Argon2 takes ~0.15 s here: one hash shared by every test user


@dataclass
class ApiWorld:
    users: dict[str, int]
    category_id: int  # "All"
    cables_id: int  # "All / Cables"
    pc_id: int
    m_id: int
    box10_id: int
    drum_id: int
    warehouse_id: int
    warehouse_code: str
    bins: dict[str, int]
    stock_location_id: int
    pricelist_id: int
    net30_id: int
    supplier_id: int
    vat_id: int


def build_api_world(engine: Engine) -> ApiWorld:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        base = create_base_setup(session)
        cables = create_category(session, "Cables", base.category, accounts=base.accounts)
        users = {}
        for username, roles in PEOPLE.items():
            user = User(username=username, full_name=username.title(), email=f"{username}@example.com",
                        password_hash=_hash(PASSWORD))
            session.add(user)
            session.flush()
            session.add_all(UserGroup(user_id=user.id, group_id=base.groups[r].id) for r in roles)
            users[username] = user.id
        pricelist = Pricelist(name="Contractors")
        supplier = Supplier(code="S-ELX", name="Elektro Grosshandel", default_lead_time_days=5)
        session.add_all([pricelist, supplier])
        session.flush()
        return ApiWorld(
            users=users,
            category_id=base.category.id,
            cables_id=cables.id,
            pc_id=base.uoms["pc"].id,
            m_id=base.uoms["m"].id,
            box10_id=base.uoms["box 10"].id,
            drum_id=base.uoms["drum 500 m"].id,
            warehouse_id=base.warehouse.warehouse.id,
            warehouse_code=base.warehouse.warehouse.code,
            bins={name: loc.id for name, loc in base.warehouse.bins.items()},
            stock_location_id=base.warehouse.stock.id,
            pricelist_id=pricelist.id,
            net30_id=base.payment_terms["Net 30"].id,
            supplier_id=supplier.id,
            vat_id=base.taxes["VAT 19%"].id,
        )


def make_app(engine: Engine, database_url: str):
    app = create_app(Settings(database_url=database_url, app_env="test", secret_key="test-secret-key-0123456789"))
    app.state.engine.dispose()
    app.state.engine = engine  # the test's engine: one pool, and the schema the fixture created
    return app


def csrf_from_login_page(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200, page.text
    return CSRF_INPUT.search(page.text).group(1)


def log_in(app, username: str, password: str = PASSWORD) -> TestClient:
    client = TestClient(app)
    token = csrf_from_login_page(client)
    done = client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                       "next": "/"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    me = client.get("/api/v1/me")
    assert me.status_code == 200, me.text
    client.headers["X-CSRF-Token"] = me.headers["X-CSRF-Token"]
    return client


@pytest.fixture
def api_world(engine) -> ApiWorld:
    return build_api_world(engine)


@pytest.fixture
def api_app(engine, sqlite_url, api_world):
    return make_app(engine, sqlite_url)


@pytest.fixture
def login(api_app) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def _login(username: str, password: str = PASSWORD) -> TestClient:
        client = log_in(api_app, username, password)
        clients.append(client)
        return client

    yield _login
    for c in clients:
        c.close()


@pytest.fixture
def anonymous(api_app) -> Iterator[TestClient]:
    with TestClient(api_app) as client:
        yield client


def product_body(world: ApiWorld, sku: str, **extra) -> dict:
    body = {"sku": sku, "name": f"Product {sku}", "category_id": world.cables_id, "uom_id": world.pc_id,
            "list_price": "10.00", "standard_cost": "6.0000"}
    body.update(extra)
    return body


def add_products(engine: Engine, world: ApiWorld, specs: list[tuple[str, str, str]]) -> dict[str, int]:
    """(sku, name, list_price) rows, straight into the database."""
    ids = {}
    with Session(engine, expire_on_commit=False) as session, session.begin():
        from models.masterdata import ProductCategory, UnitOfMeasure

        category = session.get(ProductCategory, world.cables_id)
        pc = session.get(UnitOfMeasure, world.pc_id)
        for sku, name, price in specs:
            ids[sku] = create_product(session, sku, category, pc, name=name, list_price=Decimal(price)).id
    return ids



@pytest.fixture
def as_user(api_app, engine, api_world) -> Iterator[Callable[[str], TestClient]]:
    """A client authenticated by an API token made straight in the database: no Argon2 verify per test, for
    tests about what a user may do rather than how they log in (test_api_auth covers that)."""
    import secrets

    from api.deps import token_sha256
    from models.users import ApiToken

    clients: list[TestClient] = []

    def _as(username: str) -> TestClient:
        token = "tf_" + secrets.token_urlsafe(24)
        with Session(engine) as session, session.begin():
            session.add(ApiToken(user_id=api_world.users[username], name="test", token_sha256=token_sha256(token),
                                 prefix=token[:12]))
        client = TestClient(api_app, headers={"Authorization": f"Bearer {token}"})
        clients.append(client)
        return client

    yield _as
    for c in clients:
        c.close()
