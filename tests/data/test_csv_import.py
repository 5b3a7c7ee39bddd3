"""The CSV importer: good files land with exact values; a bad file reports every bad row (line, column,
reason) and writes nothing; opening stock and balances post balanced entries that match what was imported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

from models.accounting import account_balance, trial_balance
from models.csv_import import ImportFailed, RowError, import_csv, run_import
from models.ledger import JournalEntry, JournalLine
from models.masterdata import Address, Customer, Product, Supplier, SupplierOffer
from models.records import AuditEvent
from models.setup import create_base_setup, create_category, create_product
from models.stock import Quant, ValuationLayer

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "import-samples"


@dataclass
class Base:
    engine: object
    warehouse_code: str


@pytest.fixture
def base(engine) -> Base:
    with Session(engine) as s, s.begin():
        setup = create_base_setup(s)
        cables = create_category(s, "Cables", setup.category, accounts=setup.accounts)
        create_category(s, "Switches", setup.category, accounts=setup.accounts)
        s.add(Supplier(code="S-HAG", name="Hager", default_lead_time_days=9))
        s.add(Customer(code="C-001", name="Acme", segment="contractor"))
        create_product(s, "EXIST-1", cables, setup.uoms["m"], list_price=Decimal("1.00"), cost=Decimal("0.50"))
    return Base(engine, "WH")


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def counts(engine) -> dict[str, int]:
    return {m.__tablename__: count(engine, m) for m in (Product, Customer, Supplier, SupplierOffer, Address, Quant,
                                                        ValuationLayer, JournalEntry, JournalLine, AuditEvent)}


def failed(engine, kind: str, text: str, **kw) -> list[RowError]:
    with pytest.raises(ImportFailed) as info:
        run_import(engine, kind, text.encode(), actor="tester", **kw)
    return info.value.errors


PRODUCTS = """sku,name,category,uom,purchase_uom,list_price,standard_cost,valuation,weight_kg
CAB-NYM-3X15,NYM-J 3x1.5 installation cable,All / Cables,m,drum 500 m,1.25,0.6235,fifo,0.115
SW-ROCKER,Rocker switch white,All / Switches,pc,box 10,4.90,2.1,avco,
EXIST-1,Existing cable renamed,All / Cables,m,,1.10,,,
"""


def test_products_import_creates_and_upserts_with_exact_decimals(base):
    summary = run_import(base.engine, "products", PRODUCTS.encode(), actor="ada")
    assert (summary.rows, summary.created, summary.updated) == (3, 2, 1)
    with Session(base.engine) as s:
        cable = s.scalar(select(Product).where(Product.sku == "CAB-NYM-3X15"))
        assert (cable.list_price, cable.standard_cost, cable.weight_kg) == (
            Decimal("1.25"), Decimal("0.6235"), Decimal("0.115"))
        switch = s.scalar(select(Product).where(Product.sku == "SW-ROCKER"))
        assert switch.valuation == "avco" and switch.standard_cost == Decimal("2.1000")
        existing = s.scalar(select(Product).where(Product.sku == "EXIST-1"))
        # Given cells change, empty cells keep what was stored.
        assert (existing.name, existing.list_price, existing.standard_cost) == (
            "Existing cable renamed", Decimal("1.10"), Decimal("0.5000"))
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "import"))
        assert (event.actor, event.entity_kind, event.data["created"], event.data["updated"]) == (
            "ada", "products", 2, 1)
    again = run_import(base.engine, "products", PRODUCTS.encode(), actor="ada")
    assert (again.created, again.updated) == (0, 0)  # nothing differs any more


def test_errors_on_lines_3_and_5_are_both_reported_and_nothing_is_written(base):
    text = """sku,name,category,uom,list_price
NEW-1,Good one,All / Cables,m,1.00
NEW-2,Bad price,All / Cables,m,"1,50"
NEW-3,Good too,All / Cables,pc,2.00
NEW-4,No such category,All / Lamps,pc,3.00
"""
    before = counts(base.engine)
    errors = failed(base.engine, "products", text)
    assert [(e.line, e.column) for e in errors] == [(3, "list_price"), (5, "category")]
    assert "decimal separator" in errors[0].reason
    assert "no product category 'All / Lamps'" in errors[1].reason
    assert counts(base.engine) == before


def test_all_kinds_of_row_errors_are_collected_in_one_pass(base):
    text = """sku,name,category,uom,list_price,valuation,barcode
A-1,One,All / Cables,m,1.001,fifo,
A-2,,All / Cables,m,1,fifo,
A-3,Three,All / Cables,furlong,1,lifo,
A-1,Again,All / Cables,m,1,fifo,
A 5,Five,All / Cables,pc,1,fifo,4001
A-6,Six,All / Cables,pc,1,fifo,4001
A-7,Seven,All / Cables,pc,1
"""
    errors = failed(base.engine, "products", text)
    found = {(e.line, e.column) for e in errors}
    assert found == {(2, "list_price"), (3, "name"), (4, "uom"), (4, "valuation"), (5, "sku"), (6, "sku"),
                     (7, "barcode"), (8, "-")}
    reasons = {(e.line, e.column): e.reason for e in errors}
    assert "more than 2 decimal places" in reasons[(2, "list_price")]
    assert reasons[(5, "sku")] == "duplicate of line 2 (same sku)"
    assert "pattern" in reasons[(6, "sku")]
    assert reasons[(7, "barcode")] == "duplicate of line 6 (same barcode)"
    assert reasons[(8, "-")] == "expected 7 fields, found 5"
    assert count(base.engine, Product) == 1


def test_header_problems_stop_the_file_and_name_the_columns(base):
    errors = failed(base.engine, "products", "sku,name,colour,category\nX,Y,red,All\n")
    assert {(e.line, e.column, e.reason.split(";")[0]) for e in errors} == {
        (1, "colour", "unknown column"), (1, "uom", "required column is missing")}
    assert failed(base.engine, "products", "")[0].reason == "the file is empty"
    assert failed(base.engine, "products", "sku,name,category,uom\n")[0].reason == "the file has no data rows"
    latin1 = "sku,name,category,uom\nX-1,Schalter wei\xdf,All / Cables,pc\n".encode("latin-1")
    with pytest.raises(ImportFailed) as info:
        run_import(base.engine, "products", latin1, actor="t")
    assert info.value.errors == [RowError(2, "-", "the file is not UTF-8 text (save it as 'CSV UTF-8')")]


def test_semicolons_and_a_byte_order_mark_are_understood(base):
    text = "\ufeffSKU;Name;Category;UoM;List_Price\nSEMI-1;Semi colon;All / Cables;pc;2.50\n"
    assert run_import(base.engine, "products", text.encode(), actor="t").created == 1
    with Session(base.engine) as s:
        assert s.scalar(select(Product.list_price).where(Product.sku == "SEMI-1")) == Decimal("2.50")


def test_customers_and_suppliers_with_addresses(base):
    customers = """code,name,segment,credit_limit,payment_term,street,city,postcode,country,address_kind
C-001,Acme Elektro GmbH,contractor,25000.00,Net 30,Hauptstr. 1,Nürnberg,90402,DE,invoice
C-002,Lichthaus,retailer,,,,,,,
"""
    summary = run_import(base.engine, "customers", customers.encode(), actor="t")
    assert (summary.created, summary.updated) == (1, 1)
    with Session(base.engine) as s:
        acme = s.scalar(select(Customer).where(Customer.code == "C-001"))
        assert (acme.name, acme.credit_limit) == ("Acme Elektro GmbH", Decimal("25000.00"))
        assert [(a.kind, a.city) for a in s.scalars(select(Address).where(Address.customer_id == acme.id))] == [
            ("invoice", "Nürnberg")]
    # Without the credit controller's right, a changed limit is refused (an unchanged one is fine).
    errors = failed(base.engine, "customers", "code,name,segment,credit_limit\nC-001,Acme,contractor,30000\n"
                                              "C-002,Lichthaus,retailer,0\n", may_set_credit_limit=False)
    assert [(e.line, e.column) for e in errors] == [(2, "credit_limit")]
    bad = failed(base.engine, "suppliers", "code,name,payment_term,default_lead_time_days,street\n"
                                           "S-NEW,New,Net 99,400,Somewhere\n")
    assert {(e.line, e.column) for e in bad} == {(2, "payment_term"), (2, "default_lead_time_days"), (2, "city"),
                                                 (2, "postcode")}


def test_offers_reference_existing_suppliers_and_products(base):
    text = """supplier_code,sku,price,min_qty,pack_multiple,lead_time_days
S-HAG,EXIST-1,0.4120,500,50,
S-HAG,EXIST-1,0.3900,1000,100,12
S-XXX,EXIST-1,1,1,1,1
S-HAG,NOPE,1,1,1,1
S-HAG,EXIST-1,0.5,500.000,0,
"""
    errors = failed(base.engine, "offers", text)
    assert [(e.line, e.column) for e in errors] == [(4, "supplier_code"), (5, "sku"), (6, "pack_multiple"),
                                                    (6, "sku")]
    good = "\n".join(text.splitlines()[:3]) + "\n"
    assert run_import(base.engine, "offers", good.encode(), actor="t").created == 2
    with Session(base.engine) as s:
        offers = s.scalars(select(SupplierOffer).order_by(SupplierOffer.min_qty)).all()
        assert [(o.price, o.min_qty, o.pack_multiple, o.lead_time_days) for o in offers] == [
            (Decimal("0.4120"), Decimal("500.000"), Decimal("50.000"), 9),  # lead time from the supplier
            (Decimal("0.3900"), Decimal("1000.000"), Decimal("100.000"), 12)]
    updated = run_import(base.engine, "offers", b"supplier_code,sku,price,min_qty\nS-HAG,EXIST-1,0.4000,500\n",
                         actor="t")
    assert (updated.created, updated.updated) == (0, 1)


STOCK = """warehouse_code,location,sku,quantity,unit_cost
WH,WH/Stock/A-01-01,EXIST-1,1500,0.4800
WH,WHA0102,EXIST-1,250.5,0.5200
WH,WH/Stock/A-01-01,AVCO-1,10,2.0000
WH,WH/Stock/A-02-01,AVCO-1,30,3.0000
WH,WH/Stock,STD-1,4,
"""


def _stock_products(engine):
    with Session(engine) as s, s.begin():
        from models.masterdata import ProductCategory, UnitOfMeasure

        cat = s.scalar(select(ProductCategory).where(ProductCategory.full_name == "All / Cables"))
        pc = s.scalar(select(UnitOfMeasure).where(UnitOfMeasure.name == "pc"))
        create_product(s, "AVCO-1", cat, pc, cost=Decimal("0"), valuation="avco")
        create_product(s, "STD-1", cat, pc, cost=Decimal("7.5000"), valuation="standard")


def test_opening_stock_makes_quants_layers_and_one_balanced_entry(base):
    _stock_products(base.engine)
    summary = run_import(base.engine, "stock", STOCK.encode(), actor="fin", entry_date=date(2026, 1, 1))
    assert (summary.rows, summary.created, summary.updated) == (5, 5, 0)
    with Session(base.engine) as s:
        layers = s.scalars(select(ValuationLayer).order_by(ValuationLayer.id)).all()
        assert [(l.quantity, l.unit_cost, l.value) for l in layers] == [
            (Decimal("1500.000"), Decimal("0.4800"), Decimal("720.00")),
            (Decimal("250.500"), Decimal("0.5200"), Decimal("130.26")),
            (Decimal("10.000"), Decimal("2.0000"), Decimal("20.00")),
            (Decimal("30.000"), Decimal("3.0000"), Decimal("90.00")),
            (Decimal("4.000"), Decimal("7.5000"), Decimal("30.00")),
        ]
        assert all(l.remaining_qty == l.quantity and l.remaining_value == l.value for l in layers)
        valuation = sum((l.value for l in layers), Decimal(0))
        entry = s.scalar(select(JournalEntry))
        assert (entry.date, entry.source_key.startswith("opening-stock:")) == (date(2026, 1, 1), True)
        assert account_balance(s, "1200") == valuation == Decimal("990.26")
        assert account_balance(s, "3900") == -valuation
        assert trial_balance(s)[0] == trial_balance(s)[1]
        avco = s.scalar(select(Product).where(Product.sku == "AVCO-1"))
        assert avco.standard_cost == Decimal("2.7500")  # (10 x 2 + 30 x 3) / 40
        quants = {(q.location_id, q.quantity) for q in s.scalars(select(Quant).where(Quant.product_id == avco.id))}
        assert {qty for _, qty in quants} == {Decimal("10.000"), Decimal("30.000")}
    # The same file again would double the stock: refused, and nothing changes.
    before = counts(base.engine)
    errors = failed(base.engine, "stock", STOCK)
    assert "already imported" in errors[0].reason
    assert counts(base.engine) == before


def test_opening_stock_rows_are_checked_against_locations_units_and_costs(base):
    _stock_products(base.engine)
    text = """warehouse_code,location,sku,quantity,unit_cost
WH,Partners/Customers,EXIST-1,5,1
WH,WH/Input,EXIST-1,5,1
XX,WH/Stock,EXIST-1,5,1
WH,WH/Stock,AVCO-1,2.5,1
WH,WH/Stock,STD-1,1,8.00
WH,WH/Stock/A-01-01,AVCO-1,3,
WH,WH/Stock,EXIST-1,-1,1
WH,WH/Stock/A-02-01,EXIST-1,1.0001,1
"""
    errors = failed(base.engine, "stock", text)
    assert [(e.line, e.column) for e in errors] == [
        (2, "location"), (3, "location"), (4, "warehouse_code"), (5, "quantity"), (6, "unit_cost"),
        (7, "unit_cost"), (8, "quantity"), (9, "quantity")]
    reasons = [e.reason for e in errors]
    assert "is not in warehouse WH" in reasons[0]
    assert "is not a stock location (its usage is input)" in reasons[1]
    assert "not a multiple of the rounding 1" in reasons[3]
    assert "standard cost 7.5000" in reasons[4]
    assert count(base.engine, Quant) == 0 and count(base.engine, JournalEntry) == 0


def test_opening_balances_post_one_entry_against_3900(base):
    text = """partner_type,code,amount,reference
customer,C-001,1200.50,INV-2025-118
supplier,S-HAG,800.00,
customer,C-404,1,
supplier,S-HAG,1,
customer,C-001,0,
"""
    errors = failed(base.engine, "balances", text)
    assert [(e.line, e.column) for e in errors] == [(4, "code"), (5, "code"), (6, "amount"), (6, "code")]
    good = "\n".join(text.splitlines()[:3]) + "\n"
    assert run_import(base.engine, "balances", good.encode(), actor="fin").created == 2
    with Session(base.engine) as s:
        assert account_balance(s, "1100") == Decimal("1200.50")
        assert account_balance(s, "2100") == Decimal("-800.00")
        assert account_balance(s, "3900") == Decimal("-400.50")
        lines = s.scalars(select(JournalLine).order_by(JournalLine.id)).all()
        acme = s.scalar(select(Customer.id).where(Customer.code == "C-001"))
        hager = s.scalar(select(Supplier.id).where(Supplier.code == "S-HAG"))
        assert [(l.customer_id, l.supplier_id) for l in lines[:2]] == [(acme, None), (None, hager)]


@pytest.mark.parametrize("kind", ["products", "customers", "suppliers", "offers", "stock", "balances"])
def test_the_sample_files_import(base, kind):
    _stock_products(base.engine)
    with Session(base.engine) as s, s.begin():  # what the samples refer to beyond the base setup
        from models.masterdata import Pricelist

        s.add(Pricelist(name="Contractors"))
    order = ["products", "customers", "suppliers", "offers", "stock", "balances"]
    for earlier in order[: order.index(kind) + 1]:
        summary = run_import(base.engine, earlier, (SAMPLES / f"{earlier}.csv").read_bytes(), actor="t")
        assert summary.rows > 0


def test_import_flushes_without_committing(engine):
    """The caller owns the transaction: a rollback after a good import leaves nothing."""
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        setup = create_base_setup(s)
        create_category(s, "Cables", setup.category, accounts=setup.accounts)
    with Session(engine) as s:
        s.begin()
        import_csv(s, "products", b"sku,name,category,uom\nR-1,R,All / Cables,pc\n", actor="t")
        assert s.scalar(select(func.count()).select_from(Product)) == 1
        s.rollback()
    assert count(engine, Product) == 0
