"""Reusable builders for the structure every company needs: chart of accounts, taxes, units, location tree.

The demo loader and test fixtures both build on these, so the conventions live in one place:

- Chart of accounts: `CHART_OF_ACCOUNTS` (codes the stock and sales code posts to). Every product category
  points at 1200 valuation, 1210 stock input (interim received), 1220 stock output (interim delivered),
  5000 expense (COGS) and 4000 income.
- Location tree. Each warehouse `W` has a root `W` (usage view) with children `W/Stock` (internal; bins below
  it, `W/Stock/A-01-01`, internal, with barcodes), `W/Input` (input) and `W/Quarantine` (quarantine), all
  carrying `warehouse_id`. Global locations (warehouse_id None) hang below two view roots: `Partners/Customers`,
  `Partners/Suppliers`, `Virtual/Transit`, `Virtual/Inventory loss`, `Virtual/Scrap`.
  Reservable stock = quants in the internal locations of the warehouse.
- `Location.path` is "/" + the ids of the ancestors from the root down + the node's own id + "/", e.g. a bin
  with id 7 below Stock (2) below the root (1) has path "/1/2/7/". A subtree is `path LIKE '/1/2/%'`,
  the node itself included.
- Units of measure: `ratio` is how many reference units (ratio 1) of the category one unit holds:
  "drum 500 m" has ratio 500 in category "length" whose reference is "m"; "box 10" has ratio 10 in "unit".

All builders flush and never commit (the caller owns the transaction), and the `ensure_*`/`create_*` builders
for shared structure are idempotent: they return what exists and add only what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session

from models.common import AccountType, InvoicePolicy, LocationUsage, ValuationMethod
from models.masterdata import (
    Account,
    Branch,
    Company,
    Location,
    PaymentTerm,
    Product,
    ProductCategory,
    Tax,
    UnitOfMeasure,
    Warehouse,
)
from models.users import ROLES, Group

# code, name, type, reconcile
CHART_OF_ACCOUNTS: tuple[tuple[str, str, AccountType, bool], ...] = (
    ("1100", "Accounts receivable", AccountType.receivable, True),
    ("1200", "Stock valuation", AccountType.asset, False),
    ("1210", "Stock interim received", AccountType.asset, True),
    ("1220", "Stock interim delivered", AccountType.asset, True),
    ("1300", "Input VAT", AccountType.asset, False),
    ("1900", "Bank", AccountType.asset, False),
    ("2100", "Accounts payable", AccountType.payable, True),
    ("2200", "Output VAT", AccountType.liability, False),
    ("3000", "Equity", AccountType.equity, False),
    ("3900", "Opening balance", AccountType.equity, False),
    ("4000", "Sales revenue", AccountType.income, False),
    ("5000", "Cost of goods sold", AccountType.expense, False),
    ("5100", "Inventory adjustments", AccountType.expense, False),
    ("5200", "Price differences", AccountType.expense, False),
)

# Account codes a product category points at.
CATEGORY_ACCOUNTS = {
    "valuation_account_id": "1200",
    "stock_input_account_id": "1210",
    "stock_output_account_id": "1220",
    "expense_account_id": "5000",
    "income_account_id": "4000",
}

SALES_VAT = "VAT 19%"
PURCHASE_VAT = "Input VAT 19%"
# name, rate, account code
STANDARD_TAXES: tuple[tuple[str, Decimal, str], ...] = (
    (SALES_VAT, Decimal("19"), "2200"),
    (PURCHASE_VAT, Decimal("19"), "1300"),
)

# name, category, ratio to the category's reference unit, rounding
STANDARD_UOMS: tuple[tuple[str, str, Decimal, Decimal], ...] = (
    ("pc", "unit", Decimal(1), Decimal(1)),
    ("box 5", "unit", Decimal(5), Decimal(1)),
    ("box 10", "unit", Decimal(10), Decimal(1)),
    ("box 20", "unit", Decimal(20), Decimal(1)),
    ("box 25", "unit", Decimal(25), Decimal(1)),
    ("box 50", "unit", Decimal(50), Decimal(1)),
    ("box 100", "unit", Decimal(100), Decimal(1)),
    ("bundle 10", "unit", Decimal(10), Decimal(1)),
    ("bundle 25", "unit", Decimal(25), Decimal(1)),
    ("m", "length", Decimal(1), Decimal("0.1")),
    ("coil 25 m", "length", Decimal(25), Decimal(1)),
    ("coil 50 m", "length", Decimal(50), Decimal(1)),
    ("ring 50 m", "length", Decimal(50), Decimal(1)),
    ("ring 100 m", "length", Decimal(100), Decimal(1)),
    ("bundle 20 m", "length", Decimal(20), Decimal(1)),
    ("bundle 30 m", "length", Decimal(30), Decimal(1)),
    ("box 305 m", "length", Decimal(305), Decimal(1)),
    ("drum 500 m", "length", Decimal(500), Decimal(1)),
    ("drum 1000 m", "length", Decimal(1000), Decimal(1)),
)

# name, days
STANDARD_PAYMENT_TERMS: tuple[tuple[str, int], ...] = (
    ("Immediate", 0),
    ("Net 14", 14),
    ("Net 30", 30),
    ("Net 45", 45),
    ("Net 60", 60),
)

# full_name, usage: the global (warehouse-less) locations. View roots come first (parents before children).
GLOBAL_LOCATIONS: tuple[tuple[str, LocationUsage], ...] = (
    ("Partners", LocationUsage.view),
    ("Virtual", LocationUsage.view),
    ("Partners/Customers", LocationUsage.customer),
    ("Partners/Suppliers", LocationUsage.supplier),
    ("Virtual/Transit", LocationUsage.transit),
    ("Virtual/Inventory loss", LocationUsage.inventory_loss),
    ("Virtual/Scrap", LocationUsage.scrap),
)


@dataclass
class GlobalLocations:
    customers: Location
    suppliers: Location
    transit: Location
    inventory_loss: Location
    scrap: Location


@dataclass
class WarehouseLocations:
    warehouse: Warehouse
    root: Location
    stock: Location
    input: Location
    quarantine: Location
    bins: dict[str, Location] = field(default_factory=dict)  # bin name ("A-01-01") -> location


@dataclass
class BaseSetup:
    """A minimal company for tests: one branch, one warehouse with bins, accounts, taxes, units, terms."""

    company: Company
    branch: Branch
    accounts: dict[str, Account]
    taxes: dict[str, Tax]
    uoms: dict[str, UnitOfMeasure]
    payment_terms: dict[str, PaymentTerm]
    locations: GlobalLocations
    warehouse: WarehouseLocations
    category: ProductCategory
    groups: dict[str, Group]


def create_chart_of_accounts(session: Session) -> dict[str, Account]:
    """The chart in `CHART_OF_ACCOUNTS`, keyed by code (adds only the missing accounts)."""
    existing = {a.code: a for a in session.scalars(select(Account))}
    for code, name, kind, reconcile in CHART_OF_ACCOUNTS:
        if code not in existing:
            existing[code] = Account(code=code, name=name, type=kind, reconcile=reconcile)
            session.add(existing[code])
    session.flush()
    return existing


def create_standard_taxes(session: Session) -> dict[str, Tax]:
    """Sales VAT 19% (on 2200) and input VAT 19% (on 1300), keyed by name. Needs the chart of accounts."""
    accounts = create_chart_of_accounts(session)
    existing = {t.name: t for t in session.scalars(select(Tax))}
    for name, rate, code in STANDARD_TAXES:
        if name not in existing:
            existing[name] = Tax(name=name, rate=rate, account_id=accounts[code].id)
            session.add(existing[name])
    session.flush()
    return existing


def create_standard_uoms(session: Session) -> dict[str, UnitOfMeasure]:
    existing = {u.name: u for u in session.scalars(select(UnitOfMeasure))}
    for name, category, ratio, rounding in STANDARD_UOMS:
        if name not in existing:
            existing[name] = UnitOfMeasure(name=name, category=category, ratio=ratio, rounding=rounding)
            session.add(existing[name])
    session.flush()
    return existing


def create_payment_terms(session: Session) -> dict[str, PaymentTerm]:
    existing = {t.name: t for t in session.scalars(select(PaymentTerm))}
    for name, days in STANDARD_PAYMENT_TERMS:
        if name not in existing:
            existing[name] = PaymentTerm(name=name, days=days)
            session.add(existing[name])
    session.flush()
    return existing


def ensure_role_groups(session: Session) -> dict[str, Group]:
    """One group per role in `ROLES`, named exactly as the role."""
    existing = {g.name: g for g in session.scalars(select(Group))}
    for role in ROLES:
        if role not in existing:
            existing[role] = Group(name=role, description=f"Role {role}")
            session.add(existing[role])
    session.flush()
    return existing


def create_company(session: Session, name: str, branches: Sequence[tuple[str, str]], currency: str = "EUR"):
    """A company and its branches (code, name). Returns (company, [branch, ...])."""
    company = Company(name=name, currency=currency)
    session.add(company)
    session.flush()
    made = [Branch(company_id=company.id, code=code, name=bname) for code, bname in branches]
    session.add_all(made)
    session.flush()
    return company, made


def create_category(
    session: Session, name: str, parent: ProductCategory | None = None, *, accounts: dict[str, Account] | None = None
) -> ProductCategory:
    """A product category carrying the standard stock accounts (see `CATEGORY_ACCOUNTS`).

    `full_name` is the parent's full name + " / " + name, as Odoo shows it ("Cables / Installation cable").
    """
    accounts = accounts if accounts is not None else create_chart_of_accounts(session)
    full_name = f"{parent.full_name} / {name}" if parent is not None else name
    category = ProductCategory(
        name=name,
        full_name=full_name,
        parent_id=parent.id if parent is not None else None,
        **{column: accounts[code].id for column, code in CATEGORY_ACCOUNTS.items()},
    )
    session.add(category)
    session.flush()
    return category


def _location(name: str, full_name: str, usage: LocationUsage, parent: Location | None, warehouse_id, barcode=None):
    return Location(
        name=name,
        full_name=full_name,
        usage=usage,
        parent_id=parent.id if parent is not None else None,
        warehouse_id=warehouse_id,
        barcode=barcode,
    )


def _set_paths(session: Session, nodes: Iterable[tuple[Location, Location | None]]) -> None:
    """Give flushed nodes their path from the parent's path (the ids exist only after the insert)."""
    for node, parent in nodes:
        node.path = f"{parent.path if parent is not None else '/'}{node.id}/"
    session.flush()


def ensure_global_locations(session: Session) -> GlobalLocations:
    """The warehouse-less locations (customers, suppliers, transit, inventory loss, scrap) and their view roots."""
    by_name = {
        loc.full_name: loc
        for loc in session.scalars(
            select(Location).where(Location.full_name.in_([full for full, _ in GLOBAL_LOCATIONS]))
        )
    }
    for full_name, usage in GLOBAL_LOCATIONS:
        if full_name in by_name:
            continue
        parent_name, _, name = full_name.rpartition("/")
        parent = by_name[parent_name] if parent_name else None
        node = _location(name, full_name, usage, parent, None)
        session.add(node)
        session.flush()
        _set_paths(session, [(node, parent)])
        by_name[full_name] = node
    return GlobalLocations(
        customers=by_name["Partners/Customers"],
        suppliers=by_name["Partners/Suppliers"],
        transit=by_name["Virtual/Transit"],
        inventory_loss=by_name["Virtual/Inventory loss"],
        scrap=by_name["Virtual/Scrap"],
    )


def bin_barcode(warehouse_code: str, bin_name: str) -> str:
    """The label printed on a bin: warehouse code + bin name without dashes ("NBG" + "A-01-01" -> "NBGA0101")."""
    return f"{warehouse_code}{bin_name.replace('-', '')}"


def grid_bins(aisles: str, racks: int, levels: int) -> list[str]:
    """Bin names aisle-rack-level: grid_bins("AB", 2, 2) -> A-01-01, A-01-02, A-02-01, ..., B-02-02."""
    return [f"{a}-{r:02d}-{lvl:02d}" for a in aisles for r in range(1, racks + 1) for lvl in range(1, levels + 1)]


def create_warehouse(
    session: Session, branch: Branch, code: str, name: str, bins: Sequence[str] = ()
) -> WarehouseLocations:
    """A warehouse with its location tree: CODE (view), CODE/Stock (internal) with the given bins below it
    (internal, barcode from `bin_barcode`), CODE/Input (input) and CODE/Quarantine (quarantine)."""
    warehouse = Warehouse(branch_id=branch.id, code=code, name=name)
    session.add(warehouse)
    session.flush()
    wid = warehouse.id
    root = _location(code, code, LocationUsage.view, None, wid)
    session.add(root)
    session.flush()
    stock = _location("Stock", f"{code}/Stock", LocationUsage.internal, root, wid)
    inbound = _location("Input", f"{code}/Input", LocationUsage.input, root, wid)
    quarantine = _location("Quarantine", f"{code}/Quarantine", LocationUsage.quarantine, root, wid)
    session.add_all([stock, inbound, quarantine])
    session.flush()
    bin_nodes = {
        b: _location(b, f"{code}/Stock/{b}", LocationUsage.internal, stock, wid, barcode=bin_barcode(code, b))
        for b in bins
    }
    session.add_all(list(bin_nodes.values()))
    session.flush()
    # Paths need the ids, so they are written after the inserts, parents first.
    _set_paths(session, [(root, None)])
    _set_paths(session, [(stock, root), (inbound, root), (quarantine, root)])
    _set_paths(session, [(node, stock) for node in bin_nodes.values()])
    return WarehouseLocations(warehouse, root, stock, inbound, quarantine, bin_nodes)


def create_product(
    session: Session,
    sku: str,
    category: ProductCategory,
    uom: UnitOfMeasure,
    *,
    name: str | None = None,
    purchase_uom: UnitOfMeasure | None = None,
    list_price: Decimal = Decimal("10.00"),
    cost: Decimal = Decimal("6.00"),
    valuation: ValuationMethod = ValuationMethod.fifo,
    invoice_policy: InvoicePolicy = InvoicePolicy.delivered,
    tax: Tax | None = None,
) -> Product:
    """One product, for tests that need a few rather than the demo catalogue."""
    product = Product(
        sku=sku,
        name=name or sku,
        category_id=category.id,
        uom_id=uom.id,
        purchase_uom_id=(purchase_uom or uom).id,
        list_price=list_price,
        standard_cost=cost,
        valuation=valuation,
        invoice_policy=invoice_policy,
        tax_id=tax.id if tax is not None else None,
    )
    session.add(product)
    session.flush()
    return product


def create_base_setup(
    session: Session,
    *,
    company_name: str = "Test Electrical GmbH",
    warehouse_code: str = "WH",
    bins: Sequence[str] = ("A-01-01", "A-01-02", "A-02-01"),
) -> BaseSetup:
    """Everything a stock or sales test needs before its first product: a company with branch "HQ", the chart
    of accounts, taxes, units, payment terms, role groups, the global locations, one warehouse with bins and
    a category "All" with the standard accounts."""
    accounts = create_chart_of_accounts(session)
    taxes = create_standard_taxes(session)
    uoms = create_standard_uoms(session)
    terms = create_payment_terms(session)
    groups = ensure_role_groups(session)
    locations = ensure_global_locations(session)
    company, (branch,) = create_company(session, company_name, [("HQ", "Head office")])
    warehouse = create_warehouse(session, branch, warehouse_code, f"{warehouse_code} warehouse", bins)
    category = create_category(session, "All", accounts=accounts)
    return BaseSetup(company, branch, accounts, taxes, uoms, terms, locations, warehouse, category, groups)
