"""The demo data: deterministic, the promised size, and true to the books and the stock rules."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

import models.demo as demo
from models.accounting import account_balance, trial_balance
from models.common import ZERO, LocationUsage, PricelistRuleKind, ValuationMethod, money, qty
from models.db import make_engine
from models.demo import DEMO_LOGINS, DEMO_PASSWORD, DemoDataError, ensure_demo_data, load_demo_data
from models.ledger import JournalEntry, JournalLine
from models.masterdata import (
    Account,
    Address,
    Company,
    Customer,
    Location,
    Pricelist,
    PricelistRule,
    Product,
    ProductCategory,
    ReorderRule,
    Supplier,
    SupplierOffer,
    UnitOfMeasure,
)
from models.setup import (
    CATEGORY_ACCOUNTS,
    CHART_OF_ACCOUNTS,
    create_base_setup,
    create_chart_of_accounts,
    ensure_global_locations,
)
from models.stock import Quant, ValuationLayer
from models.users import ROLES, Group, User, UserGroup, verify_password

SMALL = 0.05  # 250 products, 15 customers, 4 suppliers: loads in well under a second


def fingerprint(engine) -> dict[str, str]:
    """A hash per table of the rows that matter, by natural keys (not ids) and normalised numbers, so two
    loads compare equal across databases (SQLite hands numerics back through floats)."""
    with Session(engine) as s:
        rows = lambda *cols: s.execute(select(*cols)).all()  # noqa: E731
        sku = dict(rows(Product.id, Product.sku))
        sup = dict(rows(Supplier.id, Supplier.code))
        cus = dict(rows(Customer.id, Customer.code))
        loc = dict(rows(Location.id, Location.full_name))
        acc = dict(rows(Account.id, Account.code))
        pls = dict(rows(Pricelist.id, Pricelist.name))
        cat = dict(rows(ProductCategory.id, ProductCategory.full_name))
        uom = dict(rows(UnitOfMeasure.id, UnitOfMeasure.name))
        m = lambda v: None if v is None else str(money(v))  # noqa: E731
        q = lambda v: None if v is None else str(qty(v))  # noqa: E731
        u = lambda v: None if v is None else str(Decimal(str(v)).quantize(Decimal("0.0001")))  # noqa: E731
        tables = {
            "products": [
                (code, name, cat[c], uom[um], uom[pu], bc, q(w), m(lp), u(cost), val, inv)
                for code, name, c, um, pu, bc, w, lp, cost, val, inv in rows(
                    Product.sku, Product.name, Product.category_id, Product.uom_id, Product.purchase_uom_id,
                    Product.barcode, Product.weight_kg, Product.list_price, Product.standard_cost, Product.valuation,
                    Product.invoice_policy)
            ],
            "customers": [
                (code, name, seg, mail, m(limit), pls[pl], bo)
                for code, name, seg, mail, limit, pl, bo in rows(
                    Customer.code, Customer.name, Customer.segment, Customer.email, Customer.credit_limit,
                    Customer.pricelist_id, Customer.backorder_preference)
            ],
            "offers": [
                (sku[p], sup[sp], u(price), q(mq), q(pack), lead)
                for p, sp, price, mq, pack, lead in rows(
                    SupplierOffer.product_id, SupplierOffer.supplier_id, SupplierOffer.price, SupplierOffer.min_qty,
                    SupplierOffer.pack_multiple, SupplierOffer.lead_time_days)
            ],
            "rules": [
                (pls[pl], sku.get(p), cat.get(c), kind, q(mq), m(fixed), u(pct), base, u(rnd), u(extra), d1, d2)
                for pl, p, c, kind, mq, fixed, pct, base, rnd, extra, d1, d2 in rows(
                    PricelistRule.pricelist_id, PricelistRule.product_id, PricelistRule.category_id, PricelistRule.kind,
                    PricelistRule.min_quantity, PricelistRule.fixed_price, PricelistRule.percent_discount,
                    PricelistRule.base, PricelistRule.price_round, PricelistRule.price_surcharge,
                    PricelistRule.date_start, PricelistRule.date_end)
            ],
            "quants": [
                (sku[p], loc[lc], q(quantity), at.isoformat())
                for p, lc, quantity, at in rows(Quant.product_id, Quant.location_id, Quant.quantity, Quant.in_date)
            ],
            "layers": [
                (sku[p], q(rq), u(unit), m(rv))
                for p, rq, unit, rv in rows(ValuationLayer.product_id, ValuationLayer.remaining_qty,
                                            ValuationLayer.unit_cost, ValuationLayer.remaining_value)
            ],
            "reorder": [
                (sku[p], wh, q(lo), q(hi), q(mult), sup[sp])
                for p, wh, lo, hi, mult, sp in rows(
                    ReorderRule.product_id, ReorderRule.warehouse_id, ReorderRule.min_qty, ReorderRule.max_qty,
                    ReorderRule.qty_multiple, ReorderRule.supplier_id)
            ],
            "journal": [
                (acc[a], m(d), m(c), cus.get(cu), sup.get(sp))
                for a, d, c, cu, sp in rows(JournalLine.account_id, JournalLine.debit, JournalLine.credit,
                                            JournalLine.customer_id, JournalLine.supplier_id)
            ],
            "addresses": [
                (cus.get(cu), sup.get(sp), kind, street, city, pc)
                for cu, sp, kind, street, city, pc in rows(Address.customer_id, Address.supplier_id, Address.kind,
                                                           Address.street, Address.city, Address.postcode)
            ],
            "users": rows(User.username, User.full_name, User.email),
        }
    return {name: hashlib.sha256(repr(sorted(rows_, key=repr)).encode()).hexdigest() for name, rows_ in tables.items()}


def check_invariants(engine) -> None:
    with Session(engine) as s:
        rows = lambda *cols: s.execute(select(*cols)).all()  # noqa: E731
        # Stock: reserved never exceeds on hand (nothing is reserved at the opening), and the valuation
        # layers hold exactly the stock the quants hold, product by product.
        quants = rows(Quant.product_id, Quant.location_id, Quant.quantity, Quant.reserved)
        assert quants
        assert all(ZERO == qty(reserved) < qty(quantity) for _, _, quantity, reserved in quants)
        on_hand: dict[int, Decimal] = defaultdict(Decimal)
        for product_id, _, quantity, _ in quants:
            on_hand[product_id] += qty(quantity)
        layers = rows(ValuationLayer.product_id, ValuationLayer.quantity, ValuationLayer.unit_cost,
                      ValuationLayer.value, ValuationLayer.remaining_qty, ValuationLayer.remaining_value)
        layered: dict[int, Decimal] = defaultdict(Decimal)
        layer_value = ZERO
        for product_id, quantity, unit_cost, value, remaining_qty, remaining_value in layers:
            assert qty(remaining_qty) == qty(quantity) > ZERO
            assert money(remaining_value) == money(value) == money(qty(quantity) * Decimal(str(unit_cost)))
            layered[product_id] += qty(remaining_qty)
            layer_value += money(remaining_value)
        assert layered == on_hand

        # Books: the stock account holds the layers' value; every entry and the whole journal balance.
        assert account_balance(s, "1200") == layer_value
        debit, credit = trial_balance(s)
        assert debit == credit
        for entry_id, d, c in s.execute(
            select(JournalLine.entry_id, func.sum(JournalLine.debit), func.sum(JournalLine.credit))
            .group_by(JournalLine.entry_id)
        ):
            assert money(d) == money(c), f"entry {entry_id} does not balance"
        keys = set(s.scalars(select(JournalEntry.source_key)))
        assert {"demo:opening:stock", "demo:opening:receivables", "demo:opening:payables"} <= keys
        party = {code: s.execute(select(JournalLine.customer_id, JournalLine.supplier_id).join(Account)
                                 .where(Account.code == code)).all() for code in ("1100", "2100")}
        assert party["1100"] and all(cu is not None and sp is None for cu, sp in party["1100"])
        assert party["2100"] and all(sp is not None and cu is None for cu, sp in party["2100"])
        assert account_balance(s, "3900") == -(
            layer_value + account_balance(s, "1900") + account_balance(s, "1100") + account_balance(s, "2100")
        )

        # Purchasing: every product has an offer, bought in whole purchase units; reorder rules are sane.
        ratio = dict(rows(UnitOfMeasure.id, UnitOfMeasure.ratio))
        products = {pid: (pu, val, lp, cost) for pid, pu, val, lp, cost in rows(
            Product.id, Product.purchase_uom_id, Product.valuation, Product.list_price, Product.standard_cost)}
        offered = set()
        for pid, pack, min_qty, price in rows(SupplierOffer.product_id, SupplierOffer.pack_multiple,
                                              SupplierOffer.min_qty, SupplierOffer.price):
            offered.add(pid)
            assert qty(pack) == qty(ratio[products[pid][0]]) and qty(min_qty) % qty(pack) == ZERO and price > 0
        assert offered == set(products)
        for lo, hi, mult, supplier_id in rows(ReorderRule.min_qty, ReorderRule.max_qty, ReorderRule.qty_multiple,
                                              ReorderRule.supplier_id):
            assert ZERO < qty(lo) <= qty(hi) and qty(mult) > 0 and supplier_id is not None
        assert {val for _, val, _, _ in products.values()} == set(ValuationMethod)
        assert all(money(lp) > Decimal(str(cost)) for _, _, lp, cost in products.values())

        # Categories carry the stock accounts the postings use.
        code_of = dict(rows(Account.id, Account.code))
        for c in s.scalars(select(ProductCategory)):
            assert {col: code_of[getattr(c, col)] for col in CATEGORY_ACCOUNTS} == CATEGORY_ACCOUNTS

        # Location tree: path = ancestors' ids + own id; bins are internal with barcodes below W/Stock.
        locations = {loc.id: loc for loc in s.scalars(select(Location))}
        for loc in locations.values():
            parent = locations.get(loc.parent_id)
            assert loc.path == f"{parent.path if parent else '/'}{loc.id}/"
        by_name = {loc.full_name: loc for loc in locations.values()}
        for name, usage in [
            ("Partners/Customers", LocationUsage.customer),
            ("Partners/Suppliers", LocationUsage.supplier),
            ("Virtual/Transit", LocationUsage.transit),
            ("Virtual/Inventory loss", LocationUsage.inventory_loss),
            ("Virtual/Scrap", LocationUsage.scrap),
        ]:
            assert by_name[name].usage == usage and by_name[name].warehouse_id is None
        for code in ("NBG", "WUE", "REG"):
            assert by_name[code].usage == LocationUsage.view
            assert by_name[f"{code}/Stock"].usage == LocationUsage.internal
            assert by_name[f"{code}/Input"].usage == LocationUsage.input
            assert by_name[f"{code}/Quarantine"].usage == LocationUsage.quarantine
            bins = [loc for loc in locations.values() if loc.parent_id == by_name[f"{code}/Stock"].id]
            assert len(bins) >= 4
            assert all(b.usage == LocationUsage.internal and b.barcode and b.warehouse_id == by_name[code].warehouse_id
                       for b in bins)
        stock_usages = {LocationUsage.internal, LocationUsage.input, LocationUsage.quarantine}
        assert all(locations[location_id].usage in stock_usages for _, location_id, _, _ in quants)

        # Customers: a pricelist, an invoice and a delivery address each; every segment present.
        customers = s.scalars(select(Customer)).all()
        kinds = defaultdict(set)
        for customer_id, kind in rows(Address.customer_id, Address.kind):
            kinds[customer_id].add(kind)
        assert all(c.pricelist_id is not None and c.payment_term_id is not None for c in customers)
        assert all(kinds[c.id] == {"invoice", "delivery"} for c in customers)
        assert {c.segment for c in customers} == set(demo.SEGMENTS)
        assert len({c.name for c in customers}) == len(customers)

        # Pricelist rules: all three kinds, on products, categories and everything, with quantity breaks.
        rules = s.scalars(select(PricelistRule)).all()
        assert {r.kind for r in rules} == set(PricelistRuleKind)
        assert any(r.product_id for r in rules) and any(r.category_id for r in rules)
        assert any(r.product_id is None and r.category_id is None for r in rules)
        assert any(qty(r.min_quantity) > 0 for r in rules) and any(r.date_end for r in rules)
        for r in rules:
            if r.kind == PricelistRuleKind.fixed:
                assert r.product_id and money(r.fixed_price) >= money(products[r.product_id][3])

        # People: a user for every role, each in the group named by the role.
        roles_of = defaultdict(set)
        for username, group in s.execute(
            select(User.username, Group.name).join(UserGroup, UserGroup.user_id == User.id)
            .join(Group, Group.id == UserGroup.group_id)
        ):
            roles_of[username].add(group)
        assert {role for roles in roles_of.values() for role in roles} == set(ROLES)
        assert all(role in roles_of[username] for username, role in DEMO_LOGINS)


def _table_counts(engine) -> dict[str, int]:
    with Session(engine) as s:
        return demo.count_rows(s)


def test_small_load_keeps_every_invariant(engine):
    summary = load_demo_data(engine, scale=SMALL)
    assert summary.counts["products"] == 250 and summary.counts["customers"] == 15
    assert summary.counts["suppliers"] == 4 and summary.counts["warehouses"] == 3
    check_invariants(engine)
    with Session(engine) as s:
        assert account_balance(s, "1200") == summary.stock_value
        assert account_balance(s, "1100") == summary.receivables
        assert account_balance(s, "2100") == -summary.payables
        hashes = s.scalars(select(User.password_hash)).all()
        assert len(set(hashes)) == 1  # hashed once, shared
        assert verify_password(DEMO_PASSWORD, hashes[0])


def test_same_seed_same_data_and_another_seed_other_data(tmp_path):
    prints = []
    for n, seed in enumerate([demo.DEFAULT_SEED, demo.DEFAULT_SEED, 11]):
        eng = make_engine(f"sqlite:///{tmp_path / f'demo-{n}.db'}")
        SQLModel.metadata.create_all(eng)
        load_demo_data(eng, seed=seed, scale=SMALL)
        prints.append(fingerprint(eng))
        eng.dispose()
    assert prints[0] == prints[1]
    assert all(prints[0][table] != prints[2][table] for table in ("products", "customers", "quants", "journal"))


def test_full_scale_has_the_promised_size(engine):
    started = time.perf_counter()
    summary = load_demo_data(engine)
    seconds = time.perf_counter() - started
    c = summary.counts
    assert c["products"] == 5000 and c["customers"] == 300 and c["suppliers"] == 40
    assert c["warehouses"] == 3 and c["branches"] == 3 and c["locations"] > 500
    assert c["supplier_offers"] > 7000 and c["reorder_rules"] > 3000 and c["quants"] > 8000
    assert c["pricelist_rules"] > 800 and c["valuation_layers"] > 6000
    assert c["users"] == len(DEMO_LOGINS)
    check_invariants(engine)
    # Seconds, not minutes: 2-4 s on the shared 2-core dev machine; the bound catches a row-by-row regression.
    assert seconds < 60, f"full demo load took {seconds:.1f} s"


def test_ensure_demo_data_loads_once(engine):
    assert ensure_demo_data(engine, scale=SMALL) is True
    before = _table_counts(engine)
    assert ensure_demo_data(engine, scale=SMALL) is False
    assert _table_counts(engine) == before
    with pytest.raises(DemoDataError):
        load_demo_data(engine, scale=SMALL)
    assert _table_counts(engine) == before


def test_a_failed_load_leaves_nothing_behind(engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom halfway")

    monkeypatch.setattr(demo, "_pricelists", broken)  # after products, offers, stock; before customers
    with pytest.raises(RuntimeError, match="boom halfway"):
        load_demo_data(engine, scale=SMALL)
    assert set(_table_counts(engine).values()) == {0}
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 0


def test_cli_prints_the_summary_and_honours_if_empty(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert demo.main(["--database-url", url, "--create-schema", "--scale", "0.02", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "seed 5, scale 0.02" in out and "products" in out and "sam.sales" in out
    assert demo.main(["--database-url", url, "--if-empty", "--scale", "0.02"]) == 0
    assert "nothing loaded" in capsys.readouterr().out
    assert demo.main(["--database-url", url, "--scale", "0.02"]) == 1


@pytest.mark.postgres
def test_postgres_load_matches_sqlite(pg_engine, tmp_path):
    assert ensure_demo_data(pg_engine, scale=SMALL) is True
    assert ensure_demo_data(pg_engine, scale=SMALL) is False
    check_invariants(pg_engine)
    lite = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    SQLModel.metadata.create_all(lite)
    load_demo_data(lite, scale=SMALL)
    assert fingerprint(pg_engine) == fingerprint(lite)
    lite.dispose()


@pytest.mark.postgres
def test_postgres_full_scale(pg_engine):
    summary = load_demo_data(pg_engine)
    assert summary.counts["products"] == 5000 and summary.counts["customers"] == 300
    check_invariants(pg_engine)


def test_concurrent_ensure_loads_once(any_engine):
    """api and worker may both start on an empty database: one loads, the other waits and finds the company."""
    results: list[bool] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(ensure_demo_data(any_engine, scale=0.02))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [False, True]
    with Session(any_engine) as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 1


def test_setup_builders_follow_the_conventions(engine):
    with Session(engine) as s, s.begin():
        base = create_base_setup(s, warehouse_code="NBG", bins=("A-01-01", "A-01-02"))
        wh = base.warehouse
        assert wh.root.full_name == "NBG" and wh.root.usage == LocationUsage.view
        assert wh.stock.path == f"/{wh.root.id}/{wh.stock.id}/"
        assert wh.bins["A-01-02"].full_name == "NBG/Stock/A-01-02" and wh.bins["A-01-02"].barcode == "NBGA0102"
        assert wh.bins["A-01-02"].path == f"{wh.stock.path}{wh.bins['A-01-02'].id}/"
        assert base.locations.scrap.full_name == "Virtual/Scrap" and base.locations.scrap.warehouse_id is None
        assert base.category.valuation_account_id == base.accounts["1200"].id
        assert base.uoms["drum 500 m"].ratio == 500 and base.uoms["drum 500 m"].category == "length"
        # The shared structure is idempotent: asking again adds nothing.
        assert ensure_global_locations(s).customers.id == base.locations.customers.id
        assert create_chart_of_accounts(s)["1100"].id == base.accounts["1100"].id
        assert {a.code for a in s.scalars(select(Account))} == {code for code, *_ in CHART_OF_ACCOUNTS}
        assert s.scalar(select(func.count()).select_from(Location)) == 7 + 6
