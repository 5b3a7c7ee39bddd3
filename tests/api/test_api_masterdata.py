"""Master data over JSON: create, read, update with real validation; lists that filter, sort and page right;
duplicates are 409, unknown ids 404, bad input 422 naming the field; writes are audited."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlmodel import Session

from models.inventory import MoveRequest, post_move, reserve
from models.masterdata import Customer, Product
from models.records import AuditEvent
from tests.api.api_world import anonymous, api_app, api_world, as_user, login  # noqa: F401  (fixtures)
from tests.api.api_world import add_products, product_body


def fields_of(response) -> set[str]:
    return {str(e["loc"][-1]) for e in response.json()["detail"]}


def test_create_read_update_product_keeps_decimals_exact_and_audits(as_user, api_world, engine):
    pia = as_user("pia")
    r = pia.post("/api/v1/products", json=product_body(api_world, "CAB-NYM-3X15", uom_id=api_world.m_id,
                                                       purchase_uom_id=api_world.drum_id, list_price="1.25",
                                                       standard_cost="0.6235", weight_kg="0.115"))
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["list_price"], made["standard_cost"], made["weight_kg"]) == ("1.25", "0.6235", "0.115")
    assert made["purchase_uom_id"] == api_world.drum_id
    with Session(engine) as s:
        row = s.get(Product, made["id"])
        assert row.list_price == Decimal("1.25") and row.standard_cost == Decimal("0.6235")

    assert pia.get(f"/api/v1/products/{made['id']}").json() == made
    patched = pia.patch(f"/api/v1/products/{made['id']}", json={"list_price": "1.30", "name": "NYM-J 3x1.5"})
    assert patched.status_code == 200
    assert patched.json()["list_price"] == "1.30" and patched.json()["sku"] == "CAB-NYM-3X15"
    with Session(engine) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.entity_kind == "product")
                           .order_by(AuditEvent.id)).all()
        assert [(e.action, e.actor) for e in events] == [("create", "pia"), ("update", "pia")]
        assert events[1].data == {"changed": {"list_price": "1.30", "name": "NYM-J 3x1.5"}}


def test_bad_product_bodies_are_422_naming_each_field(as_user, api_world):
    pia = as_user("pia")
    r = pia.post("/api/v1/products", json={"sku": "has space", "name": "", "list_price": "1.234",
                                           "standard_cost": "-1", "valuation": "lifo"})
    assert r.status_code == 422
    assert {"sku", "name", "list_price", "standard_cost", "valuation", "category_id", "uom_id"} <= fields_of(r)
    unknown = pia.post("/api/v1/products", json=product_body(api_world, "X-1", category_id=9999, tax_id=8888))
    assert unknown.status_code == 422
    assert fields_of(unknown) == {"category_id", "tax_id"}
    assert "no product category with id 9999" in unknown.text
    # A purchase unit that does not convert to the product's unit (drum of metres vs pieces).
    wrong_unit = pia.post("/api/v1/products", json=product_body(api_world, "X-2", purchase_uom_id=api_world.drum_id))
    assert wrong_unit.status_code == 422 and fields_of(wrong_unit) == {"purchase_uom_id"}
    made = pia.post("/api/v1/products", json=product_body(api_world, "X-3")).json()
    null_name = pia.patch(f"/api/v1/products/{made['id']}", json={"name": None})
    assert null_name.status_code == 422 and fields_of(null_name) == {"name"}
    assert pia.get(f"/api/v1/products/{made['id']}").json()["name"] == "Product X-3"
    boxed = pia.patch(f"/api/v1/products/{made['id']}", json={"purchase_uom_id": api_world.box10_id})
    assert boxed.status_code == 200 and boxed.json()["purchase_uom_id"] == api_world.box10_id
    unboxed = pia.patch(f"/api/v1/products/{made['id']}", json={"purchase_uom_id": None})
    assert unboxed.status_code == 200 and unboxed.json()["purchase_uom_id"] == api_world.pc_id
    metres = pia.patch(f"/api/v1/products/{made['id']}", json={"purchase_uom_id": api_world.drum_id})
    assert metres.status_code == 422 and fields_of(metres) == {"purchase_uom_id"}


def test_duplicate_sku_is_409_and_unknown_id_404(as_user, api_world, engine):
    pia = as_user("pia")
    assert pia.post("/api/v1/products", json=product_body(api_world, "DUP-1")).status_code == 201
    dup = pia.post("/api/v1/products", json=product_body(api_world, "DUP-1", name="Other"))
    assert dup.status_code == 409
    assert "sku" in dup.json()["detail"] and "already exists" in dup.json()["detail"]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Product).where(Product.sku == "DUP-1")) == 1
    assert pia.get("/api/v1/products/424242").status_code == 404
    assert pia.get(f"/api/v1/products/{10**20}").status_code == 422  # beyond SQLite's integers: not a 500
    assert pia.patch("/api/v1/products/424242", json={"name": "x"}).status_code == 404
    assert pia.get("/api/v1/customers/424242").json()["detail"] == "customer 424242 not found"


def test_product_list_filters_sorts_and_pages(as_user, api_world, engine):
    ids = add_products(engine, api_world, [
        ("SW-001", "Switch white", "4.90"), ("SW-002", "Switch black", "5.10"), ("SW-003", "Dimmer", "19.00"),
        ("CB-100", "Cable 100 m", "61.00"), ("CB-050", "Cable 50 m", "32.00"), ("FU-16", "Fuse 16 A", "1.20"),
        ("FU-10", "Fuse 10 A", "1.10"),
    ])
    client = as_user("wes")  # any logged-in user reads
    first = client.get("/api/v1/products", params={"sort": "-list_price", "limit": 3}).json()
    assert [p["sku"] for p in first["items"]] == ["CB-100", "CB-050", "SW-003"]
    assert (first["total"], first["offset"], first["limit"]) == (7, 0, 3)
    second = client.get("/api/v1/products", params={"sort": "-list_price", "limit": 3, "offset": 3}).json()
    assert [p["sku"] for p in second["items"]] == ["SW-002", "SW-001", "FU-16"]
    last = client.get("/api/v1/products", params={"sort": "-list_price", "limit": 3, "offset": 6}).json()
    assert [p["sku"] for p in last["items"]] == ["FU-10"]

    switches = client.get("/api/v1/products", params={"q": "switch"}).json()
    assert [p["sku"] for p in switches["items"]] == ["SW-001", "SW-002"] and switches["total"] == 2
    assert client.get("/api/v1/products", params={"q": "%"}).json()["total"] == 0  # wildcards match literally
    # category filter takes the subtree: everything is in All / Cables, so asking for "All" finds them.
    assert client.get("/api/v1/products", params={"category_id": api_world.category_id}).json()["total"] == 7
    with Session(engine) as s, s.begin():
        s.get(Product, ids["FU-10"]).active = False
    inactive = client.get("/api/v1/products", params={"active": "false"}).json()
    assert [p["sku"] for p in inactive["items"]] == ["FU-10"]

    bad_sort = client.get("/api/v1/products", params={"sort": "password"})
    assert bad_sort.status_code == 422 and fields_of(bad_sort) == {"sort"}
    assert "-list_price" in bad_sort.json()["detail"][0]["msg"]
    too_many = client.get("/api/v1/products", params={"limit": 500})
    assert too_many.status_code == 422 and fields_of(too_many) == {"limit"}


def test_customers_with_addresses_and_the_credit_limit_rule(as_user, api_world, engine):
    sam = as_user("sam")
    body = {"code": "C-001", "name": "Acme Elektro", "segment": "contractor", "pricelist_id": api_world.pricelist_id,
            "payment_term_id": api_world.net30_id,
            "addresses": [{"kind": "invoice", "street": "Hauptstr. 1", "city": "Nürnberg", "postcode": "90402"}]}
    refused = sam.post("/api/v1/customers", json={**body, "credit_limit": "5000.00"})
    assert refused.status_code == 422 and fields_of(refused) == {"credit_limit"}
    made = sam.post("/api/v1/customers", json=body)
    assert made.status_code == 201, made.text
    customer = made.json()
    assert customer["credit_limit"] == "0.00"
    assert [(a["kind"], a["city"]) for a in customer["addresses"]] == [("invoice", "Nürnberg")]
    assert sam.patch(f"/api/v1/customers/{customer['id']}", json={"credit_limit": "900"}).status_code == 422
    assert sam.patch(f"/api/v1/customers/{customer['id']}", json={"phone": "+49 911 1"}).status_code == 200

    cora = as_user("cora")
    raised = cora.patch(f"/api/v1/customers/{customer['id']}", json={"credit_limit": "25000.00"})
    assert raised.status_code == 200 and raised.json()["credit_limit"] == "25000.00"
    added = sam.post(f"/api/v1/customers/{customer['id']}/addresses",
                     json={"street": "Lager 5", "city": "Fürth", "postcode": "90762", "country": "de"})
    assert added.status_code == 422 and fields_of(added) == {"country"}
    added = sam.post(f"/api/v1/customers/{customer['id']}/addresses",
                     json={"street": "Lager 5", "city": "Fürth", "postcode": "90762"})
    assert added.status_code == 201 and added.json()["kind"] == "delivery"
    sam.post("/api/v1/customers", json={"code": "C-002", "name": "Lichthaus", "segment": "retailer"})
    contractors = sam.get("/api/v1/customers", params={"segment": "contractor"}).json()
    assert [c["code"] for c in contractors["items"]] == ["C-001"]
    assert len(contractors["items"][0]["addresses"]) == 2
    by_limit = sam.get("/api/v1/customers", params={"sort": "-credit_limit"}).json()
    assert [c["code"] for c in by_limit["items"]] == ["C-001", "C-002"]
    with Session(engine) as s:
        assert s.get(Customer, customer["id"]).credit_limit == Decimal("25000.00")
    # Purchasing may read customers but not write them.
    assert as_user("pia").post("/api/v1/customers", json={**body, "code": "C-003"}).status_code == 403


def test_suppliers_offers_and_reorder_rules(as_user, api_world, engine):
    ids = add_products(engine, api_world, [("SW-1", "Switch", "4.90")])
    pia = as_user("pia")
    sup = pia.post("/api/v1/suppliers", json={"code": "S-HAG", "name": "Hager", "default_lead_time_days": 9})
    assert sup.status_code == 201
    offer = pia.post("/api/v1/supplier-offers", json={"supplier_id": sup.json()["id"], "product_id": ids["SW-1"],
                                                      "price": "2.1050", "min_qty": "100", "pack_multiple": "10"})
    assert offer.status_code == 201, offer.text
    assert (offer.json()["sku"], offer.json()["supplier_code"], offer.json()["price"]) == ("SW-1", "S-HAG", "2.1050")
    again = pia.post("/api/v1/supplier-offers", json={"supplier_id": sup.json()["id"], "product_id": ids["SW-1"],
                                                      "price": "2.00", "min_qty": "100"})
    assert again.status_code == 409
    zero_pack = pia.patch(f"/api/v1/supplier-offers/{offer.json()['id']}", json={"pack_multiple": "0"})
    assert zero_pack.status_code == 422 and fields_of(zero_pack) == {"pack_multiple"}
    listed = pia.get("/api/v1/supplier-offers", params={"product_id": ids["SW-1"]}).json()
    assert listed["total"] == 1 and listed["items"][0]["min_qty"] == "100.000"

    rule = {"product_id": ids["SW-1"], "warehouse_id": api_world.warehouse_id, "min_qty": "20", "max_qty": "10"}
    bad = pia.post("/api/v1/reorder-rules", json=rule)
    assert bad.status_code == 422 and "max_qty is below min_qty" in bad.text
    made = pia.post("/api/v1/reorder-rules", json={**rule, "max_qty": "60", "qty_multiple": "10"})
    assert made.status_code == 201
    shrink = pia.patch(f"/api/v1/reorder-rules/{made.json()['id']}", json={"max_qty": "5"})
    assert shrink.status_code == 422
    assert pia.get(f"/api/v1/reorder-rules/{made.json()['id']}").json()["max_qty"] == "60.000"
    assert as_user("sam").post("/api/v1/reorder-rules", json=rule).status_code == 403


def test_pricelist_rules_taxes_accounts_categories(as_user, api_world):
    boss = as_user("ada")
    rules = f"/api/v1/pricelists/{api_world.pricelist_id}/rules"
    no_price = boss.post(rules, json={"kind": "fixed"})
    assert no_price.status_code == 422 and "fixed_price is required" in no_price.text
    made = boss.post(rules, json={"kind": "discount", "percent_discount": "12.5", "category_id": api_world.cables_id,
                                  "min_quantity": "10"})
    assert made.status_code == 201 and made.json()["percent_discount"] == "12.500"
    assert boss.get(rules).json()["total"] == 1
    assert boss.get(f"/api/v1/pricelists/{api_world.pricelist_id}/rules/{made.json()['id'] + 99}").status_code == 404
    assert as_user("sam").post(rules, json={"kind": "discount", "percent_discount": "50"}).status_code == 403

    fin = as_user("fin")
    accounts = fin.get("/api/v1/accounts", params={"type": "equity"}).json()
    assert [a["code"] for a in accounts["items"]] == ["3000", "3900"]
    vat = accounts["items"][0]["id"]
    too_high = fin.post("/api/v1/taxes", json={"name": "Odd", "rate": "101", "account_id": vat})
    assert too_high.status_code == 422 and fields_of(too_high) == {"rate"}
    assert fin.post("/api/v1/taxes", json={"name": "VAT 7%", "rate": "7", "account_id": vat}).status_code == 201

    pia = as_user("pia")
    child = pia.post("/api/v1/product-categories", json={"name": "Installation", "parent_id": api_world.cables_id})
    assert child.json()["full_name"] == "All / Cables / Installation"
    renamed = pia.patch(f"/api/v1/product-categories/{api_world.cables_id}", json={"name": "Cable"})
    assert renamed.json()["full_name"] == "All / Cable"
    assert pia.get(f"/api/v1/product-categories/{child.json()['id']}").json()["full_name"] == "All / Cable / Installation"
    loop = pia.patch(f"/api/v1/product-categories/{api_world.cables_id}", json={"parent_id": child.json()["id"]})
    assert loop.status_code == 422 and fields_of(loop) == {"parent_id"}


def test_stock_levels_by_product_and_warehouse(as_user, api_world, engine):
    ids = add_products(engine, api_world, [("SW-1", "Switch", "4.90"), ("SW-2", "Socket", "3.10")])
    with Session(engine) as s, s.begin():
        from models.masterdata import Location

        supplier = s.scalar(select(Location.id).where(Location.full_name == "Partners/Suppliers"))
        post_move(s, MoveRequest("R/1", ids["SW-1"], Decimal("40"), supplier, api_world.bins["A-01-01"]))
        post_move(s, MoveRequest("R/2", ids["SW-1"], Decimal("2.5"), supplier, api_world.bins["A-01-02"]))
        post_move(s, MoveRequest("R/3", ids["SW-2"], Decimal("7"), supplier, api_world.bins["A-01-01"]))
        reserve(s, demand_key="SO-1/1", product_id=ids["SW-1"], warehouse_id=api_world.warehouse_id,
                quantity=Decimal("12"))
    client = as_user("wes")
    levels = client.get("/api/v1/stock", params={"product_id": ids["SW-1"]}).json()
    assert levels["total"] == 1
    level = levels["items"][0]
    assert (level["sku"], level["warehouse_code"]) == ("SW-1", api_world.warehouse_code)
    assert (Decimal(level["on_hand"]), Decimal(level["reserved"]), Decimal(level["available"])) == (
        Decimal("42.5"), Decimal("12"), Decimal("30.5"))
    everything = client.get("/api/v1/stock", params={"warehouse_id": api_world.warehouse_id}).json()
    assert [i["sku"] for i in everything["items"]] == ["SW-1", "SW-2"]
    assert client.get("/api/v1/stock", params={"sku": "SW-2"}).json()["items"][0]["on_hand"] == "7.000"


def test_warehouses_and_locations_read(as_user, api_world):
    client = as_user("sam")
    wh = client.get("/api/v1/warehouses").json()
    assert [w["code"] for w in wh["items"]] == [api_world.warehouse_code]
    bins = client.get("/api/v1/locations", params={"warehouse_id": api_world.warehouse_id, "usage": "internal",
                                                   "q": "A-01"}).json()
    assert [b["full_name"] for b in bins["items"]] == ["WH/Stock/A-01-01", "WH/Stock/A-01-02"]
    assert client.post("/api/v1/warehouses", json={}).status_code == 405
