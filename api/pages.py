"""The browsing pages: dashboard, products, stock by warehouse, customers and suppliers (HTML, Jinja2).

Every page needs a login (PageUser sends anonymous visitors to /login?next=...). Each route reads what its page
shows in a fixed, small number of queries (paging and sorting happen in SQL, related rows come in one query per
table, never one per row), ends the read transaction, and hands plain values to the template: the templates only
lay them out. An unknown id renders the 404 page, never a 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import and_, case, false, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from api.deps import PageUser, SessionDep, SettingsDep
from api.routes.common import contains
from models.common import ZERO, AccountType, LocationUsage, qty
from models.inventory import stock_levels
from models.ledger import JournalLine
from models.masterdata import (
    Account,
    Address,
    Branch,
    Company,
    Customer,
    Location,
    PaymentTerm,
    Pricelist,
    Product,
    ProductCategory,
    ReorderRule,
    Supplier,
    SupplierOffer,
    Tax,
    UnitOfMeasure,
    Warehouse,
)
from models.stock import Lot, Quant, ValuationLayer
from ui import TEMPLATES

router = APIRouter(include_in_schema=False)

PER_PAGE_CHOICES = (25, 50, 100, 200)
DEFAULT_PER_PAGE = 50
MAX_QUERY_LENGTH = 100
# Stock the company holds in a warehouse without being able to sell it yet (shown on the product page).
HELD_USAGES = (LocationUsage.internal, LocationUsage.input, LocationUsage.quarantine)
LOCATION_ROWS_LIMIT = 200


# ------------------------------------------------------------------------------------------- paging helpers


def _int(value: str | None, default: int, *, low: int = 1, high: int = 1_000_000) -> int:
    """A page or id typed into the address bar: tolerated when malformed (the default), clamped to range."""
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(max(number, low), high)


def _id(value: str) -> int | None:
    """A record id from the path; anything that is not a positive integer names no record (404, not 422)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else None


def _text(value: str | None) -> str:
    return (value or "").strip()[:MAX_QUERY_LENGTH]


@dataclass
class Listing:
    """One page of a list, with what the template needs to draw the filters, sortable headers and pager.

    `params` are the list's current query parameters; `url(...)` rebuilds the address with some changed, so
    every link keeps the other filters."""

    path: str
    params: dict[str, Any]
    total: int
    page: int
    per_page: int
    sort: str
    default_sort: str
    rows: list[Any] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def first(self) -> int:
        return self.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.per_page, self.total)

    @property
    def filtered(self) -> bool:
        return any(v not in (None, "") for v in self.params.values())

    @property
    def state_params(self) -> dict[str, Any]:
        """Sort and page size when they differ from the defaults: hidden fields of the filter form keep them."""
        state: dict[str, Any] = {}
        if self.sort != self.default_sort:
            state["sort"] = self.sort
        if self.per_page != DEFAULT_PER_PAGE:
            state["per_page"] = self.per_page
        return state

    def url(self, **changes: Any) -> str:
        merged = {**self.params, "sort": self.sort, "per_page": self.per_page, "page": self.page, **changes}
        defaults = {"sort": self.default_sort, "per_page": DEFAULT_PER_PAGE, "page": 1}
        query = {k: v for k, v in merged.items() if v not in (None, "") and defaults.get(k) != v}
        return self.path + ("?" + urlencode(query) if query else "")

    def sort_url(self, key: str) -> str:
        return self.url(sort=f"-{key}" if self.sort == key else key, page=1)

    def sort_state(self, key: str) -> str | None:
        """"ascending", "descending" or None: drives the arrow and aria-sort of a column header."""
        if self.sort == key:
            return "ascending"
        if self.sort == f"-{key}":
            return "descending"
        return None

    def page_links(self, around: int = 2) -> list[int | None]:
        """Page numbers to show: the first, the last and a window around the current one; None is a gap."""
        wanted = {1, self.pages, *range(self.page - around, self.page + around + 1)}
        numbers = sorted(n for n in wanted if 1 <= n <= self.pages)
        links: list[int | None] = []
        for n in numbers:
            if links and n - (links[-1] or 0) > 1:
                links.append(None)
            links.append(n)
        return links


def _per_page(request: Request) -> int:
    per_page = _int(request.query_params.get("per_page"), DEFAULT_PER_PAGE)
    return per_page if per_page in PER_PAGE_CHOICES else DEFAULT_PER_PAGE


def _listing(
    request: Request,
    *,
    params: dict[str, Any],
    sorts: Mapping[str, Any],
    default_sort: str,
    total_stmt,
    session: Session,
) -> Listing:
    """The page frame of a list: total from SQL first, so a page beyond the end shows the last page."""
    query = request.query_params
    sort = query.get("sort") or default_sort
    if sort.lstrip("-") not in sorts:
        sort = default_sort
    per_page = _per_page(request)
    total = session.scalar(total_stmt) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(_int(query.get("page"), 1), pages)
    return Listing(request.url.path, params, total, page, per_page, sort, default_sort)


def _ordered(stmt, listing: Listing, sorts: Mapping[str, Any], tie: Any):
    column = sorts[listing.sort.lstrip("-")]
    direction = column.desc() if listing.sort.startswith("-") else column.asc()
    return stmt.order_by(direction, tie).offset(listing.offset).limit(listing.per_page)


def _render(request: Request, session: Session, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    # End the read transaction before rendering: on SQLite every transaction holds the write lock (BEGIN
    # IMMEDIATE), so it should not last while HTML is produced. Rows stay loaded (expire_on_commit=False).
    session.commit()
    return TEMPLATES.TemplateResponse(request=request, name=name, context=context, status_code=code)


def _not_found(request: Request, session: Session, what: str, ident: Any, back: str, back_label: str):
    return _render(
        request,
        session,
        "pages/not_found.html",
        {"title": "Not found", "what": what, "ident": str(ident)[:40], "back": back, "back_label": back_label},
        code=status.HTTP_404_NOT_FOUND,
    )


def _internal_stock(*group_by: Any):
    """On hand and reserved summed over internal (sellable) locations, grouped by the given columns."""
    return (
        select(
            *group_by,
            func.sum(Quant.quantity).label("on_hand"),
            func.sum(Quant.reserved).label("reserved"),
        )
        .join(Location, Location.id == Quant.location_id)
        .where(Location.usage == LocationUsage.internal)
        .group_by(*group_by)
    )


def _partner_balances(partner_column: Any, account_type: AccountType, sign: int):
    """Open balance per partner on its receivable or payable accounts (debit - credit, or credit - debit)."""
    amount = JournalLine.debit - JournalLine.credit if sign > 0 else JournalLine.credit - JournalLine.debit
    return (
        select(partner_column.label("partner_id"), func.sum(amount).label("balance"))
        .join(Account, Account.id == JournalLine.account_id)
        .where(Account.type == account_type, partner_column.is_not(None))
        .group_by(partner_column)
    )


def _open_balance(session: Session, partner_column: Any, partner_id: int, account_type: AccountType, sign: int):
    stmt = _partner_balances(partner_column, account_type, sign).where(partner_column == partner_id)
    row = session.execute(stmt).first()
    return Decimal(row.balance) if row else ZERO


def _addresses(session: Session, owner_column: Any, owner_id: int) -> list[Address]:
    """A partner's addresses, the invoice address first."""
    return list(
        session.scalars(
            select(Address)
            .where(owner_column == owner_id)
            .order_by(case((Address.kind == "invoice", 0), else_=1), Address.kind, Address.id)
        )
    )


def _uom_conversion(uom: UnitOfMeasure | None, purchase: UnitOfMeasure | None) -> Decimal | None:
    """How many sales units one purchase unit holds (a drum of 500 m = 500 m), when both share a category."""
    if uom is None or purchase is None or uom.category != purchase.category or not uom.ratio:
        return None
    return Decimal(purchase.ratio) / Decimal(uom.ratio)


# ------------------------------------------------------------------------------------------- dashboard


@dataclass
class WarehouseSummary:
    id: int
    code: str
    name: str
    branch: str
    skus_in_stock: int
    skus_reserved: int
    locations: int
    below_min: int


def warehouse_summaries(session: Session) -> list[WarehouseSummary]:
    """Per warehouse: SKUs with stock, SKUs with reservations, stock locations (bins), and reorder rules whose
    available stock is below their minimum. Four queries, whatever the number of warehouses or products."""
    per_product = _internal_stock(Location.warehouse_id, Quant.product_id).subquery()
    stock_counts = {
        wid: (int(in_stock or 0), int(reserved or 0))
        for wid, in_stock, reserved in session.execute(
            select(
                per_product.c.warehouse_id,
                func.sum(case((per_product.c.on_hand > 0, 1), else_=0)),
                func.sum(case((per_product.c.reserved > 0, 1), else_=0)),
            ).group_by(per_product.c.warehouse_id)
        )
    }
    locations = dict(
        session.execute(
            select(Location.warehouse_id, func.count(Location.id))
            .where(Location.usage == LocationUsage.internal, Location.warehouse_id.is_not(None))
            .group_by(Location.warehouse_id)
        ).all()
    )
    available = per_product.c.on_hand - per_product.c.reserved
    below = dict(
        session.execute(
            select(ReorderRule.warehouse_id, func.count(ReorderRule.id))
            .outerjoin(
                per_product,
                and_(
                    per_product.c.product_id == ReorderRule.product_id,
                    per_product.c.warehouse_id == ReorderRule.warehouse_id,
                ),
            )
            .where(func.coalesce(available, 0) < ReorderRule.min_qty)
            .group_by(ReorderRule.warehouse_id)
        ).all()
    )
    rows = session.execute(
        select(Warehouse.id, Warehouse.code, Warehouse.name, Branch.name)
        .join(Branch, Branch.id == Warehouse.branch_id)
        .order_by(Warehouse.code)
    ).all()
    return [
        WarehouseSummary(
            wid, code, name, branch, *stock_counts.get(wid, (0, 0)), int(locations.get(wid, 0)), int(below.get(wid, 0))
        )
        for wid, code, name, branch in rows
    ]


@router.get("/", response_class=HTMLResponse, name="dashboard")
def dashboard(request: Request, session: SessionDep, settings: SettingsDep, user: PageUser):
    counts = session.execute(
        select(
            select(func.count(Product.id)).where(Product.active.is_(True)).scalar_subquery(),
            select(func.count(Customer.id)).where(Customer.active.is_(True)).scalar_subquery(),
            select(func.count(Supplier.id)).where(Supplier.active.is_(True)).scalar_subquery(),
            select(func.count(Warehouse.id)).scalar_subquery(),
            select(func.coalesce(func.sum(ValuationLayer.remaining_value), 0)).scalar_subquery(),
        )
    ).one()
    products, customers, suppliers, warehouses, stock_value = counts
    company = session.scalar(select(Company).order_by(Company.id).limit(1))
    summaries = warehouse_summaries(session)
    temporal_ui = (
        f"http://{settings.temporal_host}:{settings.temporal_ui_port}" if settings.temporal_embedded else None
    )
    return _render(
        request,
        session,
        "pages/dashboard.html",
        {
            "title": "Dashboard",
            "active_nav": "dashboard",
            "company": company,
            "currency": company.currency if company else "EUR",
            "counts": {
                "products": products,
                "customers": customers,
                "suppliers": suppliers,
                "warehouses": warehouses,
            },
            "stock_value": Decimal(stock_value or 0),
            "below_min": sum(s.below_min for s in summaries),
            "summaries": summaries,
            "temporal_ui": temporal_ui,
        },
    )


# ------------------------------------------------------------------------------------------- products


@dataclass
class CategoryOption:
    id: int
    full_name: str
    depth: int


def _categories(session: Session) -> list[CategoryOption]:
    return [
        CategoryOption(cid, full_name, full_name.count(" / "))
        for cid, full_name in session.execute(
            select(ProductCategory.id, ProductCategory.full_name).order_by(ProductCategory.full_name)
        )
    ]


def _category_subtree(session: Session, category_id: int):
    """The category and its descendants ("Cables" covers "Cables / Installation cable")."""
    full_name = session.scalar(select(ProductCategory.full_name).where(ProductCategory.id == category_id))
    if full_name is None:
        return None
    below = ProductCategory.full_name.startswith(f"{full_name} / ", autoescape=True)
    return select(ProductCategory.id).where(or_(ProductCategory.full_name == full_name, below))


def _product_search(q: str):
    """Every word must match a SKU prefix or part of the name, so "nym 3x1.5" finds "NYM-J 3x1.5 mm² ...";
    a scanned barcode matches whole."""
    words = and_(*(or_(Product.sku.istartswith(w, autoescape=True), contains(w, Product.name)) for w in q.split()))
    return or_(words, Product.barcode == q)


@dataclass
class ProductRow:
    id: int
    sku: str
    name: str
    category: str
    uom: str
    list_price: Decimal
    cost: Decimal
    valuation: str
    active: bool
    on_hand: Decimal
    available: Decimal


@router.get("/products", response_class=HTMLResponse, name="product_list")
def product_list(request: Request, session: SessionDep, user: PageUser):
    query = request.query_params
    q = _text(query.get("q"))
    category_id = _int(query.get("category"), 0, low=0)
    filters = []
    if q:
        filters.append(_product_search(q))
    if category_id:
        subtree = _category_subtree(session, category_id)
        filters.append(Product.category_id.in_(subtree) if subtree is not None else false())

    stock = _internal_stock(Quant.product_id).subquery()
    on_hand = func.coalesce(stock.c.on_hand, 0)
    available = on_hand - func.coalesce(stock.c.reserved, 0)
    sorts = {
        "sku": Product.sku,
        "name": Product.name,
        "category": ProductCategory.full_name,
        "list_price": Product.list_price,
        "cost": Product.standard_cost,
        "on_hand": on_hand,
        "available": available,
    }
    listing = _listing(
        request,
        params={"q": q, "category": category_id or None},
        sorts=sorts,
        default_sort="sku",
        total_stmt=select(func.count(Product.id)).where(*filters),
        session=session,
    )
    stmt = (
        select(
            Product.id,
            Product.sku,
            Product.name,
            ProductCategory.full_name,
            UnitOfMeasure.name,
            Product.list_price,
            Product.standard_cost,
            Product.valuation,
            Product.active,
            on_hand,
            available,
        )
        .join(ProductCategory, ProductCategory.id == Product.category_id)
        .join(UnitOfMeasure, UnitOfMeasure.id == Product.uom_id)
        .outerjoin(stock, stock.c.product_id == Product.id)
        .where(*filters)
    )
    listing.rows = [
        ProductRow(pid, sku, name, cat, uom, price, cost, valuation, active, qty(oh), qty(av))
        for pid, sku, name, cat, uom, price, cost, valuation, active, oh, av in session.execute(
            _ordered(stmt, listing, sorts, Product.id)
        )
    ]
    return _render(
        request,
        session,
        "pages/products.html",
        {
            "title": "Products",
            "active_nav": "products",
            "listing": listing,
            "q": q,
            "category_id": category_id,
            "categories": _categories(session),
            "per_page_choices": PER_PAGE_CHOICES,
        },
    )


@dataclass
class WarehouseStock:
    warehouse_id: int
    code: str
    name: str
    on_hand: Decimal
    reserved: Decimal
    available: Decimal
    rule: ReorderRule | None
    rule_supplier: str | None

    @property
    def below_min(self) -> bool:
        return self.rule is not None and self.available < self.rule.min_qty


@router.get("/products/{product_id}", response_class=HTMLResponse, name="product_detail")
def product_detail(product_id: str, request: Request, session: SessionDep, user: PageUser):
    ident = _id(product_id)
    product = session.get(Product, ident) if ident is not None else None
    if product is None:
        return _not_found(request, session, "product", product_id, "/products", "Back to products")
    category = session.get(ProductCategory, product.category_id)
    uom = session.get(UnitOfMeasure, product.uom_id)
    purchase_uom = session.get(UnitOfMeasure, product.purchase_uom_id)
    tax = session.get(Tax, product.tax_id) if product.tax_id else None

    offers = session.execute(
        select(SupplierOffer, Supplier.code, Supplier.name)
        .join(Supplier, Supplier.id == SupplierOffer.supplier_id)
        .where(SupplierOffer.product_id == product.id)
        .order_by(SupplierOffer.price, SupplierOffer.min_qty, Supplier.code)
    ).all()

    levels, _ = stock_levels(session, product_id=product.id, limit=1000)
    by_warehouse = {level.warehouse_id: level for level in levels}
    rules = {
        rule.warehouse_id: (rule, supplier_name)
        for rule, supplier_name in session.execute(
            select(ReorderRule, Supplier.name)
            .outerjoin(Supplier, Supplier.id == ReorderRule.supplier_id)
            .where(ReorderRule.product_id == product.id)
        )
    }
    warehouses = []
    all_warehouses = select(Warehouse.id, Warehouse.code, Warehouse.name).order_by(Warehouse.code)
    for wid, code, name in session.execute(all_warehouses):
        level = by_warehouse.get(wid)
        rule, rule_supplier = rules.get(wid, (None, None))
        warehouses.append(
            WarehouseStock(
                wid,
                code,
                name,
                level.on_hand if level else ZERO,
                level.reserved if level else ZERO,
                level.available if level else ZERO,
                rule,
                rule_supplier,
            )
        )
    totals = {
        "on_hand": sum((w.on_hand for w in warehouses), ZERO),
        "reserved": sum((w.reserved for w in warehouses), ZERO),
        "available": sum((w.available for w in warehouses), ZERO),
    }
    locations = session.execute(
        select(Location.full_name, Location.usage, Lot.name, Quant.quantity, Quant.reserved, Quant.in_date)
        .join(Location, Location.id == Quant.location_id)
        .outerjoin(Lot, Lot.id == Quant.lot_id)
        .where(Quant.product_id == product.id, Location.usage.in_(HELD_USAGES), Quant.quantity != 0)
        .order_by(Location.full_name, Quant.in_date)
        .limit(LOCATION_ROWS_LIMIT)
    ).all()
    valuation = session.execute(
        select(
            func.coalesce(func.sum(ValuationLayer.remaining_qty), 0),
            func.coalesce(func.sum(ValuationLayer.remaining_value), 0),
        ).where(ValuationLayer.product_id == product.id)
    ).one()
    list_price, cost = Decimal(product.list_price), Decimal(product.standard_cost)
    margin = (list_price - cost) / list_price * 100 if list_price else None
    return _render(
        request,
        session,
        "pages/product_detail.html",
        {
            "title": f"{product.sku} · {product.name}",
            "active_nav": "products",
            "product": product,
            "category": category,
            "uom": uom,
            "purchase_uom": purchase_uom,
            "conversion": _uom_conversion(uom, purchase_uom),
            "tax": tax,
            "margin": margin,
            "offers": offers,
            "warehouses": warehouses,
            "totals": totals,
            "locations": locations,
            "locations_limit": LOCATION_ROWS_LIMIT,
            "valued_qty": Decimal(valuation[0]),
            "stock_value": Decimal(valuation[1]),
        },
    )


# ------------------------------------------------------------------------------------------- stock


@dataclass
class StockRow:
    product_id: int
    sku: str
    product_name: str
    warehouse_code: str
    uom: str
    on_hand: Decimal
    reserved: Decimal
    available: Decimal
    min_qty: Decimal | None

    @property
    def below_min(self) -> bool:
        return self.min_qty is not None and self.available < self.min_qty


@router.get("/stock", response_class=HTMLResponse, name="stock_list")
def stock_list(request: Request, session: SessionDep, user: PageUser):
    query = request.query_params
    q = _text(query.get("q"))
    summaries = warehouse_summaries(session)
    warehouse_id = _int(query.get("warehouse"), 0, low=0)
    selected = next((s for s in summaries if s.id == warehouse_id), None)
    if selected is None:
        warehouse_id = 0

    per_page = _per_page(request)
    wanted_page = _int(query.get("page"), 1)

    def levels_on(page: int):
        return stock_levels(
            session, warehouse_id=warehouse_id or None, sku=q or None, offset=(page - 1) * per_page, limit=per_page
        )

    # stock_levels counts and pages in SQL; a page beyond the end is asked again as the last page.
    levels, total = levels_on(wanted_page)
    page = min(wanted_page, max(1, math.ceil(total / per_page)))
    if page != wanted_page:
        levels, total = levels_on(page)
    listing = Listing(
        request.url.path, {"q": q, "warehouse": warehouse_id or None}, total, page, per_page, "sku", "sku"
    )

    # Units and reorder minimums of the page's products: one query each, not one per row.
    product_ids = {level.product_id for level in levels}
    uoms: dict[int, str] = {}
    mins: dict[tuple[int, int], Decimal] = {}
    if product_ids:
        uoms = dict(
            session.execute(
                select(Product.id, UnitOfMeasure.name)
                .join(UnitOfMeasure, UnitOfMeasure.id == Product.uom_id)
                .where(Product.id.in_(product_ids))
            ).all()
        )
        rules = select(ReorderRule.product_id, ReorderRule.warehouse_id, ReorderRule.min_qty).where(
            ReorderRule.product_id.in_(product_ids)
        )
        mins = {(pid, wid): min_qty for pid, wid, min_qty in session.execute(rules)}
    listing.rows = [
        StockRow(
            level.product_id,
            level.sku,
            level.product_name,
            level.warehouse_code,
            uoms.get(level.product_id, ""),
            level.on_hand,
            level.reserved,
            level.available,
            mins.get((level.product_id, level.warehouse_id)),
        )
        for level in levels
    ]
    return _render(
        request,
        session,
        "pages/stock.html",
        {
            "title": f"Stock · {selected.code}" if selected else "Stock",
            "active_nav": "stock",
            "listing": listing,
            "q": q,
            "summaries": summaries,
            "selected": selected,
            "warehouse_id": warehouse_id,
            "per_page_choices": PER_PAGE_CHOICES,
        },
    )


# ------------------------------------------------------------------------------------------- customers


@dataclass
class CustomerRow:
    id: int
    code: str
    name: str
    segment: str
    city: str | None
    pricelist: str | None
    payment_term: str | None
    credit_limit: Decimal
    backorder_preference: str
    active: bool
    receivable: Decimal

    @property
    def over_limit(self) -> bool:
        return self.receivable > self.credit_limit


def _first_city(owner_column: Any, owner_id: Any):
    """The city of a partner's invoice address (else its first address), as a correlated subquery."""
    return (
        select(Address.city)
        .where(owner_column == owner_id)
        .order_by(case((Address.kind == "invoice", 0), else_=1), Address.id)
        .limit(1)
        .scalar_subquery()
    )


@router.get("/customers", response_class=HTMLResponse, name="customer_list")
def customer_list(request: Request, session: SessionDep, user: PageUser):
    query = request.query_params
    q = _text(query.get("q"))
    segment = _text(query.get("segment"))
    filters = []
    if q:
        filters.append(or_(Customer.code.istartswith(q, autoescape=True), contains(q, Customer.name, Customer.email)))
    if segment:
        filters.append(Customer.segment == segment)
    city = _first_city(Address.customer_id, Customer.id)
    balances = _partner_balances(JournalLine.customer_id, AccountType.receivable, +1).subquery()
    receivable = func.coalesce(balances.c.balance, 0)
    sorts = {
        "code": Customer.code,
        "name": Customer.name,
        "segment": Customer.segment,
        "city": city,
        "pricelist": Pricelist.name,
        "credit_limit": Customer.credit_limit,
        "receivable": receivable,
    }
    listing = _listing(
        request,
        params={"q": q, "segment": segment},
        sorts=sorts,
        default_sort="name",
        total_stmt=select(func.count(Customer.id)).where(*filters),
        session=session,
    )
    stmt = (
        select(
            Customer.id,
            Customer.code,
            Customer.name,
            Customer.segment,
            city,
            Pricelist.name,
            PaymentTerm.name,
            Customer.credit_limit,
            Customer.backorder_preference,
            Customer.active,
            receivable,
        )
        .outerjoin(Pricelist, Pricelist.id == Customer.pricelist_id)
        .outerjoin(balances, balances.c.partner_id == Customer.id)
        .outerjoin(PaymentTerm, PaymentTerm.id == Customer.payment_term_id)
        .where(*filters)
    )
    listing.rows = [
        CustomerRow(*row[:-1], Decimal(row[-1]))
        for row in session.execute(_ordered(stmt, listing, sorts, Customer.id))
    ]
    segments = list(session.scalars(select(Customer.segment).distinct().order_by(Customer.segment)))
    return _render(
        request,
        session,
        "pages/customers.html",
        {
            "title": "Customers",
            "active_nav": "customers",
            "listing": listing,
            "q": q,
            "segment": segment,
            "segments": segments,
            "per_page_choices": PER_PAGE_CHOICES,
        },
    )


@router.get("/customers/{customer_id}", response_class=HTMLResponse, name="customer_detail")
def customer_detail(customer_id: str, request: Request, session: SessionDep, user: PageUser):
    ident = _id(customer_id)
    customer = session.get(Customer, ident) if ident is not None else None
    if customer is None:
        return _not_found(request, session, "customer", customer_id, "/customers", "Back to customers")
    pricelist = session.get(Pricelist, customer.pricelist_id) if customer.pricelist_id else None
    term = session.get(PaymentTerm, customer.payment_term_id) if customer.payment_term_id else None
    branch = session.get(Branch, customer.branch_id) if customer.branch_id else None
    addresses = _addresses(session, Address.customer_id, customer.id)
    receivable = _open_balance(session, JournalLine.customer_id, customer.id, AccountType.receivable, +1)
    limit = Decimal(customer.credit_limit)
    return _render(
        request,
        session,
        "pages/customer_detail.html",
        {
            "title": f"{customer.code} · {customer.name}",
            "active_nav": "customers",
            "customer": customer,
            "pricelist": pricelist,
            "term": term,
            "branch": branch,
            "addresses": addresses,
            "currency": pricelist.currency if pricelist else "EUR",
            "receivable": receivable,
            "credit_used": receivable / limit * 100 if limit else None,
            "over_limit": receivable > limit,
        },
    )


# ------------------------------------------------------------------------------------------- suppliers


@dataclass
class SupplierRow:
    id: int
    code: str
    name: str
    email: str | None
    city: str | None
    payment_term: str | None
    lead_time_days: int
    offers: int
    active: bool


@router.get("/suppliers", response_class=HTMLResponse, name="supplier_list")
def supplier_list(request: Request, session: SessionDep, user: PageUser):
    query = request.query_params
    q = _text(query.get("q"))
    filters = []
    if q:
        filters.append(or_(Supplier.code.istartswith(q, autoescape=True), contains(q, Supplier.name, Supplier.email)))
    offer_counts = (
        select(SupplierOffer.supplier_id, func.count(SupplierOffer.id).label("offers"))
        .group_by(SupplierOffer.supplier_id)
        .subquery()
    )
    offers = func.coalesce(offer_counts.c.offers, 0)
    city = _first_city(Address.supplier_id, Supplier.id)
    sorts = {
        "code": Supplier.code,
        "name": Supplier.name,
        "city": city,
        "lead_time": Supplier.default_lead_time_days,
        "offers": offers,
    }
    listing = _listing(
        request,
        params={"q": q},
        sorts=sorts,
        default_sort="name",
        total_stmt=select(func.count(Supplier.id)).where(*filters),
        session=session,
    )
    stmt = (
        select(
            Supplier.id,
            Supplier.code,
            Supplier.name,
            Supplier.email,
            city,
            PaymentTerm.name,
            Supplier.default_lead_time_days,
            offers,
            Supplier.active,
        )
        .outerjoin(PaymentTerm, PaymentTerm.id == Supplier.payment_term_id)
        .outerjoin(offer_counts, offer_counts.c.supplier_id == Supplier.id)
        .where(*filters)
    )
    listing.rows = [SupplierRow(*row) for row in session.execute(_ordered(stmt, listing, sorts, Supplier.id))]
    return _render(
        request,
        session,
        "pages/suppliers.html",
        {
            "title": "Suppliers",
            "active_nav": "suppliers",
            "listing": listing,
            "q": q,
            "per_page_choices": PER_PAGE_CHOICES,
        },
    )


@dataclass
class OfferRow:
    product_id: int
    sku: str
    product_name: str
    uom: str
    purchase_uom: str
    price: Decimal
    min_qty: Decimal
    pack_multiple: Decimal
    lead_time_days: int


@router.get("/suppliers/{supplier_id}", response_class=HTMLResponse, name="supplier_detail")
def supplier_detail(supplier_id: str, request: Request, session: SessionDep, user: PageUser):
    ident = _id(supplier_id)
    supplier = session.get(Supplier, ident) if ident is not None else None
    if supplier is None:
        return _not_found(request, session, "supplier", supplier_id, "/suppliers", "Back to suppliers")
    term = session.get(PaymentTerm, supplier.payment_term_id) if supplier.payment_term_id else None
    addresses = _addresses(session, Address.supplier_id, supplier.id)
    payable = _open_balance(session, JournalLine.supplier_id, supplier.id, AccountType.payable, -1)
    q = _text(request.query_params.get("q"))
    filters = [SupplierOffer.supplier_id == supplier.id]
    if q:
        filters.append(_product_search(q))
    sorts = {
        "sku": Product.sku,
        "name": Product.name,
        "price": SupplierOffer.price,
        "min_qty": SupplierOffer.min_qty,
        "lead_time": SupplierOffer.lead_time_days,
    }
    listing = _listing(
        request,
        params={"q": q},
        sorts=sorts,
        default_sort="sku",
        total_stmt=select(func.count(SupplierOffer.id))
        .join(Product, Product.id == SupplierOffer.product_id)
        .where(*filters),
        session=session,
    )
    purchase_uom = aliased(UnitOfMeasure)
    stmt = (
        select(
            Product.id,
            Product.sku,
            Product.name,
            UnitOfMeasure.name,
            purchase_uom.name,
            SupplierOffer.price,
            SupplierOffer.min_qty,
            SupplierOffer.pack_multiple,
            SupplierOffer.lead_time_days,
        )
        .join(Product, Product.id == SupplierOffer.product_id)
        .join(UnitOfMeasure, UnitOfMeasure.id == Product.uom_id)
        .join(purchase_uom, purchase_uom.id == Product.purchase_uom_id)
        .where(*filters)
    )
    listing.rows = [OfferRow(*row) for row in session.execute(_ordered(stmt, listing, sorts, SupplierOffer.id))]
    lead_times = session.execute(
        select(
            func.min(SupplierOffer.lead_time_days),
            func.max(SupplierOffer.lead_time_days),
            func.count(func.distinct(SupplierOffer.product_id)),
        ).where(SupplierOffer.supplier_id == supplier.id)
    ).one()
    return _render(
        request,
        session,
        "pages/supplier_detail.html",
        {
            "title": f"{supplier.code} · {supplier.name}",
            "active_nav": "suppliers",
            "supplier": supplier,
            "term": term,
            "addresses": addresses,
            "listing": listing,
            "q": q,
            "lead_min": lead_times[0],
            "lead_max": lead_times[1],
            "products_offered": lead_times[2],
            "payable": payable,
            "per_page_choices": PER_PAGE_CHOICES,
        },
    )

