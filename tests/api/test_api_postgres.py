"""The key API flows on PostgreSQL: login, create, duplicate SKU 409 (PostgreSQL's own error text), paging,
an import that fails leaving nothing and one that succeeds, opening stock posting. Skips without PostgreSQL,
fails under CI=true (the pg_engine fixture decides)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models.accounting import account_balance
from models.masterdata import Product
from tests.api.api_world import build_api_world, log_in, make_app, product_body

pytestmark = pytest.mark.postgres


def test_key_flows_on_postgres(pg_engine):
    world = build_api_world(pg_engine)
    app = make_app(pg_engine, pg_engine.url.render_as_string(hide_password=False))
    pia = log_in(app, "pia")
    assert pia.post("/api/v1/products", json=product_body(world, "PG-1", list_price="12.34")).status_code == 201
    dup = pia.post("/api/v1/products", json=product_body(world, "PG-1"))
    assert dup.status_code == 409 and "sku" in dup.json()["detail"] and "PG-1" in dup.json()["detail"]
    too_long = pia.post("/api/v1/products", json=product_body(world, "PG-2", name="x" * 201))
    assert too_long.status_code == 422

    for n in range(2, 8):
        assert pia.post("/api/v1/products", json=product_body(world, f"PG-{n}", list_price=f"{n}.00")).status_code == 201
    page = pia.get("/api/v1/products", params={"sort": "-list_price", "offset": 2, "limit": 2}).json()
    assert [p["sku"] for p in page["items"]] == ["PG-6", "PG-5"] and page["total"] == 7  # PG-1 (12.34), PG-7 first
    assert pia.get("/api/v1/products", params={"q": "pg-1"}).json()["total"] == 1  # ILIKE on PostgreSQL

    bad = "sku,name,category,uom,list_price\nPG-8,Good,All / Cables,pc,1\nPG-9,Bad,All / Cables,pc,x\n"
    r = pia.post("/api/v1/imports/products", files={"file": ("p.csv", bad.encode(), "text/csv")})
    assert r.status_code == 422 and [e["line"] for e in r.json()["errors"]] == [3]
    with Session(pg_engine) as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 7

    fin = log_in(app, "fin")
    stock = f"warehouse_code,location,sku,quantity,unit_cost\n{world.warehouse_code},WH/Stock/A-01-01,PG-3,10,1.2345\n"
    r = fin.post("/api/v1/imports/stock", files={"file": ("s.csv", stock.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    with Session(pg_engine) as s:
        assert account_balance(s, "1200") == Decimal("12.35") == -account_balance(s, "3900")
    levels = fin.get("/api/v1/stock", params={"sku": "PG-3"}).json()
    assert levels["items"][0]["available"] == "10.000"
