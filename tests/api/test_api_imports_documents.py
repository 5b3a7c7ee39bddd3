"""CSV import and documents over HTTP: multipart upload, role checks, 422 with every row error and nothing
written, 413 for oversized files, sha256 kept and served back."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from sqlalchemy import func, select
from sqlmodel import Session

import api.routes.documents as documents_module
from models.accounting import account_balance
from models.masterdata import Product
from models.records import AuditEvent, Document
from models.stock import Quant
from tests.api.api_world import anonymous, api_app, api_world, as_user, login  # noqa: F401  (fixtures)
from tests.api.api_world import add_products


def n_products(engine) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(Product))


def upload(client, kind: str, text: str, **params):
    return client.post(f"/api/v1/imports/{kind}", params=params,
                       files={"file": (f"{kind}.csv", text.encode(), "text/csv")})


def test_product_import_over_http_then_a_bad_file_changes_nothing(as_user, engine):
    pia = as_user("pia")
    good = "sku,name,category,uom,list_price\nIMP-1,Imported,All / Cables,pc,3.30\nIMP-2,Second,All,m,0.99\n"
    r = upload(pia, "products", good)
    assert r.status_code == 200, r.text
    assert r.json() == {"kind": "products", "rows": 2, "created": 2, "updated": 0}
    with Session(engine) as s:
        assert s.scalar(select(Product.list_price).where(Product.sku == "IMP-2")) == Decimal("0.99")

    bad = ("sku,name,category,uom,list_price\nIMP-1,Changed,All / Cables,pc,3.40\n"
           "IMP-3,Bad,All / Cables,pc,abc\nIMP-4,Fine,All,pc,1\nIMP-5,Bad,Nowhere,pc,1\n")
    before = n_products(engine)
    refused = upload(pia, "products", bad)
    assert refused.status_code == 422
    assert refused.json() == {"errors": [
        {"line": 3, "column": "list_price", "reason": "'abc' is not a number"},
        {"line": 5, "column": "category", "reason": "no product category 'Nowhere'"},
    ]}
    assert n_products(engine) == before
    with Session(engine) as s:  # the good row of the bad file was not applied either
        assert s.scalar(select(Product.name).where(Product.sku == "IMP-1")) == "Imported"
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_kind == "products")
                             .order_by(AuditEvent.id)).all()
        assert actions == ["import", "import_failed"]


def test_import_roles_and_unknown_kind(as_user):
    sales = as_user("sam")
    r = upload(sales, "products", "sku,name,category,uom\nX,Y,All,pc\n")
    assert r.status_code == 403 and "purchasing" in r.json()["detail"]
    assert upload(sales, "stock", "warehouse_code,location,sku,quantity\n").status_code == 403
    assert upload(sales, "recipes", "a\n").status_code == 422


def test_opening_stock_import_over_http_posts_the_valuation(as_user, api_world, engine):
    add_products(engine, api_world, [("OS-1", "Opening one", "5.00")])
    text = f"warehouse_code,location,sku,quantity,unit_cost\n{api_world.warehouse_code},WH/Stock/A-01-01,OS-1,12,2.5\n"
    assert upload(as_user("pia"), "stock", text).status_code == 403
    r = upload(as_user("fin"), "stock", text, entry_date="2026-01-01")
    assert r.status_code == 200, r.text
    with Session(engine) as s:
        assert s.scalar(select(Quant.quantity)) == Decimal("12.000")
        assert account_balance(s, "1200") == Decimal("30.00") == -account_balance(s, "3900")


def test_documents_upload_list_download(as_user, api_world, engine, monkeypatch):
    ids = add_products(engine, api_world, [("DOC-1", "With a datasheet", "1.00")])
    sam = as_user("sam")
    content = b"%PDF-1.4 datasheet\n" * 100
    r = sam.post("/api/v1/documents", data={"owner_kind": "product", "owner_id": str(ids["DOC-1"])},
                 files={"file": ("../../etc/datasheet.pdf", content, "application/pdf")})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["sha256"] == hashlib.sha256(content).hexdigest()
    assert (doc["size"], doc["filename"], doc["uploaded_by"]) == (len(content), "datasheet.pdf", "sam")

    listed = sam.get("/api/v1/documents", params={"owner_kind": "product", "owner_id": ids["DOC-1"]}).json()
    assert [d["id"] for d in listed["items"]] == [doc["id"]] and listed["total"] == 1
    assert sam.get("/api/v1/documents", params={"owner_kind": "customer"}).json()["total"] == 0
    got = sam.get(f"/api/v1/documents/{doc['id']}")
    assert got.content == content
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert sam.get(f"/api/v1/documents/{doc['id'] + 1}").status_code == 404

    nowhere = sam.post("/api/v1/documents", data={"owner_kind": "product", "owner_id": "999"},
                       files={"file": ("a.txt", b"x", "text/plain")})
    assert nowhere.status_code == 422 and nowhere.json()["detail"][0]["loc"] == ["body", "owner_id"]
    odd_kind = sam.post("/api/v1/documents", data={"owner_kind": "spaceship", "owner_id": "1"},
                        files={"file": ("a.txt", b"x", "text/plain")})
    assert odd_kind.status_code == 422 and odd_kind.json()["detail"][0]["loc"] == ["body", "owner_kind"]

    monkeypatch.setattr(documents_module, "MAX_DOCUMENT_BYTES", 1000)
    big = sam.post("/api/v1/documents", data={"owner_kind": "product", "owner_id": str(ids["DOC-1"])},
                   files={"file": ("big.bin", b"0" * 1001, "application/octet-stream")})
    assert big.status_code == 413
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Document)) == 1


def test_document_upload_from_a_form_needs_the_csrf_field(login, api_world, engine):
    ids = add_products(engine, api_world, [("DOC-2", "Form upload", "1.00")])
    sam = login("sam")
    token = sam.headers.pop("X-CSRF-Token")
    form = {"owner_kind": "product", "owner_id": str(ids["DOC-2"])}
    files = {"file": ("a.txt", b"hello", "text/plain")}
    assert sam.post("/api/v1/documents", data=form, files=files).status_code == 403
    assert sam.post("/api/v1/documents", data={**form, "csrf_token": token}, files=files).status_code == 201
