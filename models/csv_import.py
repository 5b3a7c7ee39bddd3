"""CSV import of master data, opening stock, opening balances and bank statements (customer payments).

`import_csv(session, kind, data, actor=...)` reads the whole file, checks every row, and only when no row has
an error writes them all; it raises `ImportFailed` with every problem found (line, column, reason), not just the
first. It flushes and never commits: run it inside one transaction (`run_import` does), so a failure at any
point leaves nothing of the file behind. docs/csv-import.md is the user's guide to the columns.

Rules, the same for every kind:
- UTF-8 text (a byte-order mark is fine); comma-separated, or semicolon-separated when the header has
  semicolons and no commas (what spreadsheet programs write in many European locales); the first line is the
  header; column names are case-insensitive; unknown, missing required or repeated columns are errors.
- Decimal numbers use a dot ("12.50"); thousands separators are refused, so "1,500" cannot be misread.
- Referenced codes (category, unit, supplier, warehouse, ...) must already exist.
- Two rows for the same key (e.g. the same SKU) are an error: which one should win is the user's decision.
- Master data is upserted by its code: an existing product (by SKU), customer or supplier (by code) or offer
  (by supplier, SKU and min_qty) is updated; an empty optional cell keeps the stored value on update and takes
  the default on create. Opening stock and balances are postings: one file is imported once (a second import
  of the same bytes is refused, as its journal entry already exists).
- Bank statements (`import_payments`, not an ImportKind) are payments, recorded one by one by
  models.orders.record_payment; a line recorded before (same reference, amount and customer) is skipped, not
  refused, so overlapping statements import cleanly. The result names, per line, the orders whose processes must
  hear of the payment; telling them is the caller's part, after the commit (api/routes/imports.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import orders
from models.accounting import LineSpec, post_entry
from models.common import ZERO, BackorderPreference, InvoicePolicy, LocationUsage, ValuationMethod, money, utcnow
from models.ledger import JournalEntry
from models.masterdata import (
    Account,
    Address,
    Branch,
    Customer,
    Location,
    PaymentTerm,
    Pricelist,
    Product,
    ProductCategory,
    Supplier,
    SupplierOffer,
    Tax,
    UnitOfMeasure,
    Warehouse,
)
from models.masterdata_api import AddressCreate, CustomerCreate, ProductCreate, SupplierCreate, SupplierOfferCreate
from models.records import AuditEvent
from models.sales import CustomerInvoice, CustomerPayment
from models.stock import Quant, ValuationLayer

OPENING_BALANCE_ACCOUNT = "3900"
STOCK_VALUATION_ACCOUNT = "1200"  # when a product's category (and its parents) name none
RECEIVABLE_ACCOUNT = "1100"
PAYABLE_ACCOUNT = "2100"
UNIT_COST_STEP = Decimal("0.0001")
LARGEST = Decimal(10) ** 12  # beyond any quantity or amount the columns can hold
TRUE_WORDS = frozenset({"true", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "0"})


class ImportKind(StrEnum):
    products = "products"
    customers = "customers"
    suppliers = "suppliers"
    offers = "offers"
    stock = "stock"
    balances = "balances"


@dataclass(frozen=True)
class Columns:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.required + self.optional


_ADDRESS_COLUMNS = ("address_kind", "street", "city", "postcode", "country")

COLUMNS: dict[ImportKind, Columns] = {
    ImportKind.products: Columns(
        ("sku", "name", "category", "uom"),
        ("purchase_uom", "barcode", "list_price", "standard_cost", "valuation", "invoice_policy", "tax",
         "weight_kg", "volume_m3", "active"),
    ),
    ImportKind.customers: Columns(
        ("code", "name", "segment"),
        ("email", "phone", "pricelist", "payment_term", "credit_limit", "backorder_preference", "branch", "active",
         *_ADDRESS_COLUMNS),
    ),
    ImportKind.suppliers: Columns(
        ("code", "name"),
        ("email", "payment_term", "default_lead_time_days", "active", *_ADDRESS_COLUMNS),
    ),
    ImportKind.offers: Columns(("supplier_code", "sku", "price"), ("min_qty", "pack_multiple", "lead_time_days")),
    ImportKind.stock: Columns(("warehouse_code", "location", "sku", "quantity"), ("unit_cost",)),
    ImportKind.balances: Columns(("partner_type", "code", "amount"), ("reference",)),
}


@dataclass(frozen=True, order=True)
class RowError:
    line: int
    column: str
    reason: str


class ImportFailed(ValueError):
    """The file was refused; `errors` lists every problem found, by line."""

    def __init__(self, errors: list[RowError]):
        self.errors = sorted(set(errors))
        super().__init__(f"{len(self.errors)} error(s) in the file; nothing was imported")


@dataclass(frozen=True)
class ImportSummary:
    kind: str
    rows: int
    created: int
    updated: int


# ------------------------------------------------------------------------------------------- reading


@dataclass
class Row:
    line: int
    cells: dict[str, str]  # column -> stripped text ("" when empty); only the file's columns


@dataclass
class Sheet:
    """The parsed file, and the errors found so far (every check adds to the same list)."""

    columns: tuple[str, ...]
    rows: list[Row]
    errors: list[RowError] = field(default_factory=list)

    def error(self, line: int, column: str, reason: str) -> None:
        self.errors.append(RowError(line, column, reason))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ImportFailed(self.errors)


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFailed([RowError(line, "-", "the file is not UTF-8 text (save it as 'CSV UTF-8')")]) from None


def read_sheet(kind: ImportKind, data: bytes | str) -> Sheet:
    """Parse the header and rows; a header that cannot be used stops here, row errors are left to the checks."""
    return read_columns(COLUMNS[kind], data)


def read_columns(spec: Columns, data: bytes | str) -> Sheet:
    """read_sheet for a column spec of its own (bank statements: PAYMENT_COLUMNS)."""
    text = _decode(data)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFailed([RowError(1, "-", "the file is empty")]) from None
    except csv.Error as exc:
        raise ImportFailed([RowError(1, "-", f"unreadable header: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    while names and names[-1] == "":  # trailing separators a spreadsheet may add
        names.pop()
    problems = []
    seen: set[str] = set()
    for name in names:
        if name == "":
            problems.append(RowError(1, "-", "a column has no name"))
        elif name in seen:
            problems.append(RowError(1, name, "column appears twice"))
        elif name not in spec.all:
            problems.append(RowError(1, name, f"unknown column; the columns are: {', '.join(spec.all)}"))
        seen.add(name)
    for name in spec.required:
        if name not in seen:
            problems.append(RowError(1, name, "required column is missing"))
    if problems:
        raise ImportFailed(problems)

    sheet = Sheet(columns=tuple(names), rows=[])
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            sheet.error(start, "-", f"unreadable row: {exc}")
            break
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) > len(names) and all(not c.strip() for c in record[len(names):]):
            record = record[: len(names)]
        if len(record) != len(names):
            sheet.error(start, "-", f"expected {len(names)} fields, found {len(record)}")
            continue
        cells = {n: c.strip() for n, c in zip(names, record, strict=True)}
        empty = [n for n in spec.required if not cells[n]]
        for name in empty:
            sheet.error(start, name, "a value is required")
        if not empty:  # a row without its key values cannot be checked any further
            sheet.rows.append(Row(start, cells))
    if not sheet.rows and not sheet.errors:
        sheet.error(2, "-", "the file has no data rows")
    return sheet


# ------------------------------------------------------------------------------------------- cell parsers
# Each returns the value, or None when the cell is empty; a bad cell records an error and returns _BAD.


class _Bad:
    def __repr__(self) -> str:
        return "<bad cell>"


_BAD: Any = _Bad()


def _cell(row: Row, column: str) -> str:
    return row.cells.get(column, "")


def parse_decimal(sheet: Sheet, row: Row, column: str, *, places: int, required: bool = False,
                  minimum: Decimal | None = None, positive: bool = False, nonzero: bool = False) -> Any:
    text = _cell(row, column)
    if text == "":
        if required:
            sheet.error(row.line, column, "a value is required")
            return _BAD
        return None
    if "," in text:
        sheet.error(row.line, column, f"{text!r} is not a number: use a dot as the decimal separator and no "
                                      "thousands separator")
        return _BAD
    try:
        value = Decimal(text)
    except InvalidOperation:
        sheet.error(row.line, column, f"{text!r} is not a number")
        return _BAD
    if not value.is_finite():
        sheet.error(row.line, column, f"{text!r} is not a number")
        return _BAD
    if abs(value) >= LARGEST:
        sheet.error(row.line, column, f"{text} is too large")
        return _BAD
    if -value.as_tuple().exponent > places and value != value.quantize(Decimal(1).scaleb(-places)):
        sheet.error(row.line, column, f"{text} has more than {places} decimal places")
        return _BAD
    if positive and value <= 0:
        sheet.error(row.line, column, f"{text} must be greater than 0")
        return _BAD
    if minimum is not None and value < minimum:
        sheet.error(row.line, column, f"{text} must be at least {minimum}")
        return _BAD
    if nonzero and value == 0:
        sheet.error(row.line, column, "must not be 0")
        return _BAD
    return value.quantize(Decimal(1).scaleb(-places)) if places else value


def parse_int(sheet: Sheet, row: Row, column: str, *, minimum: int = 0, maximum: int = 10**9) -> Any:
    text = _cell(row, column)
    if text == "":
        return None
    if not text.lstrip("-").isdigit():
        sheet.error(row.line, column, f"{text!r} is not a whole number")
        return _BAD
    value = int(text)
    if not minimum <= value <= maximum:
        sheet.error(row.line, column, f"{value} is outside {minimum}..{maximum}")
        return _BAD
    return value


def parse_bool(sheet: Sheet, row: Row, column: str) -> Any:
    text = _cell(row, column).lower()
    if text == "":
        return None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    sheet.error(row.line, column, f"{text!r} is not true/false (yes/no, 1/0 also work)")
    return _BAD


def parse_choice(sheet: Sheet, row: Row, column: str, choices: type[StrEnum]) -> Any:
    text = _cell(row, column).lower()
    if text == "":
        return None
    try:
        return choices(text)
    except ValueError:
        sheet.error(row.line, column, f"{text!r} is not one of {', '.join(c.value for c in choices)}")
        return _BAD


def lookup(sheet: Sheet, row: Row, column: str, table: Mapping[str, Any], what: str, *, required=False) -> Any:
    """The id (or object) a code in the cell names, from a table preloaded by the caller."""
    text = _cell(row, column)
    if text == "":
        if required:
            sheet.error(row.line, column, "a value is required")
            return _BAD
        return None
    found = table.get(text)
    if found is None:
        sheet.error(row.line, column, f"no {what} {text!r}")
        return _BAD
    return found


def check_duplicates(sheet: Sheet, rows: list[tuple[Row, tuple | None]], column: str, what: str) -> set[int]:
    """Report each repeat of a key; returns the lines that repeat an earlier one."""
    first: dict[tuple, int] = {}
    repeats = set()
    for row, key in rows:
        if key is None:
            continue
        if key in first:
            sheet.error(row.line, column, f"duplicate of line {first[key]} (same {what})")
            repeats.add(row.line)
        else:
            first[key] = row.line
    return repeats


def validate_model(sheet: Sheet, row: Row, model: type[BaseModel], values: dict[str, Any],
                   columns: Mapping[str, str] | None = None) -> bool:
    """Check the values against the API's Create model (the same rules as the JSON API); errors name the
    file's column (`columns` maps a field to its column when they differ)."""
    try:
        model.model_validate(values)
        return True
    except ValidationError as exc:
        for e in exc.errors(include_url=False, include_context=False):
            name = str(e["loc"][0]) if e["loc"] else "-"
            sheet.error(row.line, (columns or {}).get(name, name), e["msg"])
        return False


def _has_bad(*values: Any) -> bool:
    return any(v is _BAD for v in values)


def _all_by(session: Session, model: type, attr: str) -> dict[str, Any]:
    return {getattr(r, attr): r for r in session.scalars(select(model))}


def _in_chunks(session: Session, model: type, attr: str, keys: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    keys_list = sorted(keys)
    column = getattr(model, attr)
    for i in range(0, len(keys_list), 500):
        for r in session.scalars(select(model).where(column.in_(keys_list[i : i + 500]))):
            found[getattr(r, attr)] = r
    return found


def _set_given(values: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        values[key] = value


# ------------------------------------------------------------------------------------------- products


_PRODUCT_COLUMNS = {"category_id": "category", "uom_id": "uom", "purchase_uom_id": "purchase_uom", "tax_id": "tax"}


def _import_products(session: Session, sheet: Sheet, ctx: ImportContext) -> tuple[int, int]:
    categories = {c.full_name: c.id for c in session.scalars(select(ProductCategory))}
    uoms = _all_by(session, UnitOfMeasure, "name")
    units_by_id = {u.id: u for u in uoms.values()}
    taxes = {t.name: t.id for t in session.scalars(select(Tax))}
    existing = _in_chunks(session, Product, "sku", {r.cells["sku"] for r in sheet.rows})
    barcodes_in_db = _in_chunks(
        session, Product, "barcode", {r.cells.get("barcode", "") for r in sheet.rows} - {""}
    )
    check_duplicates(sheet, [(r, (r.cells["sku"],) if r.cells["sku"] else None) for r in sheet.rows], "sku", "sku")
    check_duplicates(sheet, [(r, (b,) if (b := r.cells.get("barcode")) else None) for r in sheet.rows],
                     "barcode", "barcode")
    with_stock = set(session.scalars(
        select(ValuationLayer.product_id).where(ValuationLayer.remaining_qty != 0).distinct()
    ))

    plans: list[tuple[Product | None, dict[str, Any]]] = []
    for row in sheet.rows:
        current = existing.get(row.cells["sku"])
        category = lookup(sheet, row, "category", categories, "product category")
        uom = lookup(sheet, row, "uom", uoms, "unit of measure")
        purchase_uom = lookup(sheet, row, "purchase_uom", uoms, "unit of measure")
        tax = lookup(sheet, row, "tax", taxes, "tax")
        list_price = parse_decimal(sheet, row, "list_price", places=2, minimum=ZERO)
        cost = parse_decimal(sheet, row, "standard_cost", places=4, minimum=ZERO)
        weight = parse_decimal(sheet, row, "weight_kg", places=3, minimum=ZERO)
        volume = parse_decimal(sheet, row, "volume_m3", places=6, minimum=ZERO)
        valuation = parse_choice(sheet, row, "valuation", ValuationMethod)
        policy = parse_choice(sheet, row, "invoice_policy", InvoicePolicy)
        active = parse_bool(sheet, row, "active")
        if _has_bad(category, uom, purchase_uom, tax, list_price, cost, weight, volume, valuation, policy, active):
            continue
        values: dict[str, Any] = current.model_dump(exclude={"id"}) if current else {}
        values["sku"] = row.cells["sku"]
        values["name"] = row.cells["name"]
        for key, value in (
            ("category_id", category), ("tax_id", tax), ("list_price", list_price), ("standard_cost", cost),
            ("weight_kg", weight), ("volume_m3", volume), ("valuation", valuation), ("invoice_policy", policy),
            ("active", active), ("barcode", row.cells.get("barcode") or None),
        ):
            _set_given(values, key, value)
        values["uom_id"] = uom.id
        # No purchase unit given: keep the stored one on update, else buy in the product's own unit.
        buy_unit = purchase_uom or (units_by_id.get(current.purchase_uom_id) if current else uom)
        values["purchase_uom_id"] = buy_unit.id
        if uom.category != buy_unit.category:
            sheet.error(row.line, "purchase_uom",
                        f"{buy_unit.name!r} ({buy_unit.category}) does not convert to {uom.name!r} ({uom.category})")
            continue
        barcode = values.get("barcode")
        other = barcodes_in_db.get(barcode) if barcode else None
        if other is not None and other.sku != values["sku"]:
            sheet.error(row.line, "barcode", f"barcode {barcode!r} already belongs to product {other.sku}")
            continue
        if current and current.id in with_stock and values.get("valuation") != current.valuation:
            sheet.error(row.line, "valuation", "the product has stock: its valuation method cannot change here")
            continue
        if validate_model(sheet, row, ProductCreate, values, _PRODUCT_COLUMNS):
            plans.append((current, values))
    sheet.raise_if_errors()

    created = updated = 0
    for current, values in plans:
        if current is None:
            session.add(Product(**values))
            created += 1
        else:
            changed = {k: v for k, v in values.items() if getattr(current, k) != v}
            if changed:
                current.sqlmodel_update(changed)
                session.add(current)
                updated += 1
    session.flush()
    return created, updated


# ------------------------------------------------------------------------------------------- partners


def _address_plan(sheet: Sheet, row: Row) -> Any:
    given = {c: row.cells[c] for c in _ADDRESS_COLUMNS if row.cells.get(c)}
    if not given:
        return None
    values = {"kind": given.get("address_kind", "delivery"), **{c: v for c, v in given.items() if c != "address_kind"}}
    if not validate_model(sheet, row, AddressCreate, values, {"kind": "address_kind"}):
        return _BAD
    return values


def _upsert_address(session: Session, owner: str, owner_id: int, values: dict[str, Any]) -> None:
    column = Address.customer_id if owner == "customer" else Address.supplier_id
    found = session.scalar(
        select(Address).where(column == owner_id, Address.kind == values["kind"]).order_by(Address.id).limit(1)
    )
    if found is None:
        session.add(Address(**values, **{f"{owner}_id": owner_id}))
    else:
        found.sqlmodel_update(values)
        session.add(found)


def _import_partners(session: Session, sheet: Sheet, ctx: ImportContext, owner: str) -> tuple[int, int]:
    model = Customer if owner == "customer" else Supplier
    rules: type[BaseModel] = CustomerCreate if owner == "customer" else SupplierCreate
    terms = {t.name: t.id for t in session.scalars(select(PaymentTerm))}
    pricelists = {p.name: p.id for p in session.scalars(select(Pricelist))}
    branches = {b.code: b.id for b in session.scalars(select(Branch))}
    existing = _in_chunks(session, model, "code", {r.cells["code"] for r in sheet.rows})
    check_duplicates(sheet, [(r, (r.cells["code"],) if r.cells["code"] else None) for r in sheet.rows],
                     "code", "code")
    columns = {"pricelist_id": "pricelist", "payment_term_id": "payment_term", "branch_id": "branch"}

    plans = []
    for row in sheet.rows:
        current = existing.get(row.cells["code"])
        term = lookup(sheet, row, "payment_term", terms, "payment term")
        active = parse_bool(sheet, row, "active")
        address = _address_plan(sheet, row)
        values: dict[str, Any] = current.model_dump(exclude={"id"}) if current else {}
        values.update(code=row.cells["code"], name=row.cells["name"])
        _set_given(values, "email", row.cells.get("email") or None)
        _set_given(values, "payment_term_id", term)
        _set_given(values, "active", active)
        bad = _has_bad(term, active, address)
        if owner == "customer":
            pricelist = lookup(sheet, row, "pricelist", pricelists, "pricelist")
            branch = lookup(sheet, row, "branch", branches, "branch")
            limit = parse_decimal(sheet, row, "credit_limit", places=2, minimum=ZERO)
            backorder = parse_choice(sheet, row, "backorder_preference", BackorderPreference)
            values["segment"] = row.cells["segment"]
            _set_given(values, "phone", row.cells.get("phone") or None)
            for key, value in (("pricelist_id", pricelist), ("branch_id", branch), ("credit_limit", limit),
                               ("backorder_preference", backorder)):
                _set_given(values, key, value)
            bad = bad or _has_bad(pricelist, branch, limit, backorder)
            if limit not in (None, _BAD) and not ctx.may_set_credit_limit:
                before = current.credit_limit if current else ZERO
                if limit != before:
                    sheet.error(row.line, "credit_limit", "only a credit controller or the CFO may set credit limits")
                    bad = True
        else:
            lead = parse_int(sheet, row, "default_lead_time_days", maximum=365)
            _set_given(values, "default_lead_time_days", lead)
            bad = bad or _has_bad(lead)
        if bad:
            continue
        if validate_model(sheet, row, rules, values, columns):
            plans.append((current, values, address))
    sheet.raise_if_errors()

    created = updated = 0
    for current, values, address in plans:
        if current is None:
            current = model(**values)
            session.add(current)
            session.flush()
            created += 1
        else:
            changed = {k: v for k, v in values.items() if getattr(current, k) != v}
            if changed:
                current.sqlmodel_update(changed)
                session.add(current)
            updated += 1 if changed or address else 0
        if address:
            _upsert_address(session, owner, current.id, address)
    session.flush()
    return created, updated


# ------------------------------------------------------------------------------------------- offers


def _import_offers(session: Session, sheet: Sheet, ctx: ImportContext) -> tuple[int, int]:
    suppliers = _in_chunks(session, Supplier, "code", {r.cells["supplier_code"] for r in sheet.rows})
    products = _in_chunks(session, Product, "sku", {r.cells["sku"] for r in sheet.rows})
    parsed = []
    for row in sheet.rows:
        supplier = lookup(sheet, row, "supplier_code", suppliers, "supplier", required=True)
        product = lookup(sheet, row, "sku", products, "product with SKU", required=True)
        price = parse_decimal(sheet, row, "price", places=4, required=True, minimum=ZERO)
        min_qty = parse_decimal(sheet, row, "min_qty", places=3, minimum=ZERO)
        multiple = parse_decimal(sheet, row, "pack_multiple", places=3, positive=True)
        lead = parse_int(sheet, row, "lead_time_days", maximum=365)
        min_qty = Decimal("1.000") if min_qty is None else min_qty
        # The key is known whenever its own cells are good, so a repeat is reported even on an otherwise bad row.
        key = None if _has_bad(supplier, product, min_qty) else (supplier.id, product.id, min_qty)
        data = None if _has_bad(supplier, product, price, min_qty, multiple, lead) else (
            supplier, product, price, min_qty, multiple, lead)
        parsed.append((row, key, data))
    check_duplicates(sheet, [(row, key) for row, key, _ in parsed], "sku", "supplier, SKU and min_qty")
    keys = [key for _, key, _ in parsed if key]
    existing: dict[tuple, SupplierOffer] = {}
    for supplier_id in {k[0] for k in keys}:
        for offer in session.scalars(select(SupplierOffer).where(SupplierOffer.supplier_id == supplier_id)):
            existing[(offer.supplier_id, offer.product_id, Decimal(offer.min_qty).quantize(Decimal("0.001")))] = offer
    plans = []
    for row, key, data in parsed:
        if data is None:
            continue
        supplier, product, price, min_qty, multiple, lead = data
        current = existing.get(key)
        values: dict[str, Any] = current.model_dump(exclude={"id"}) if current else {
            "supplier_id": supplier.id, "product_id": product.id, "min_qty": min_qty,
            "pack_multiple": Decimal(1), "lead_time_days": supplier.default_lead_time_days,
        }
        values["price"] = price
        _set_given(values, "pack_multiple", multiple)
        _set_given(values, "lead_time_days", lead)
        if validate_model(sheet, row, SupplierOfferCreate, values, {"supplier_id": "supplier_code",
                                                                     "product_id": "sku"}):
            plans.append((current, values))
    sheet.raise_if_errors()

    created = updated = 0
    for current, values in plans:
        if current is None:
            session.add(SupplierOffer(**values))
            created += 1
        else:
            changed = {k: v for k, v in values.items() if getattr(current, k) != v}
            if changed:
                current.sqlmodel_update(changed)
                session.add(current)
                updated += 1
    session.flush()
    return created, updated


# ------------------------------------------------------------------------------------------- opening stock


def _fingerprint(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:20]


def _refuse_repeat(sheet: Sheet, session: Session, source_key: str) -> None:
    entry = session.scalar(select(JournalEntry).where(JournalEntry.source_key == source_key))
    if entry is not None:
        raise ImportFailed([RowError(1, "-", f"this file was already imported (journal entry {entry.id}, "
                                             f"{entry.date.isoformat()}); nothing was imported again")])


def _missing_accounts(session: Session, codes: set[str]) -> list[RowError]:
    have = set(session.scalars(select(Account.code).where(Account.code.in_(codes))))
    return [RowError(1, "-", f"the chart of accounts has no account {c}") for c in sorted(codes - have)]


def _valuation_account(session: Session, category_id: int | None, cache: dict[int, str]) -> str:
    """The category's valuation account, else its parent's, ..., else 1200."""
    start = category_id
    if start in cache:
        return cache[start]
    code = None
    hops = 0
    while category_id is not None and hops < 50:
        category = session.get(ProductCategory, category_id)
        if category is None:
            break
        if category.valuation_account_id is not None:
            code = session.scalar(select(Account.code).where(Account.id == category.valuation_account_id))
            break
        category_id, hops = category.parent_id, hops + 1
    cache[start] = code or STOCK_VALUATION_ACCOUNT
    return cache[start]


def _import_stock(session: Session, sheet: Sheet, ctx: ImportContext) -> tuple[int, int]:
    source_key = f"opening-stock:{ctx.fingerprint}"
    _refuse_repeat(sheet, session, source_key)
    warehouses = _all_by(session, Warehouse, "code")
    products = _in_chunks(session, Product, "sku", {r.cells["sku"] for r in sheet.rows})
    names = {r.cells["location"] for r in sheet.rows}
    locations = _in_chunks(session, Location, "full_name", names)
    for code, loc in _in_chunks(session, Location, "barcode", names).items():
        locations.setdefault(code, loc)
    units = {u.id: u for u in session.scalars(select(UnitOfMeasure))}

    parsed = []
    for row in sheet.rows:
        warehouse = lookup(sheet, row, "warehouse_code", warehouses, "warehouse", required=True)
        location = lookup(sheet, row, "location", locations, "location (full name or bin barcode)", required=True)
        product = lookup(sheet, row, "sku", products, "product with SKU", required=True)
        quantity = parse_decimal(sheet, row, "quantity", places=3, required=True, positive=True)
        unit_cost = parse_decimal(sheet, row, "unit_cost", places=4, minimum=ZERO)
        key = None if _has_bad(warehouse, location, product) else (warehouse.id, location.id, product.id)
        if _has_bad(warehouse, location, product, quantity, unit_cost):
            parsed.append((row, key, None))
            continue
        if location.warehouse_id != warehouse.id:
            sheet.error(row.line, "location", f"{location.full_name} is not in warehouse {warehouse.code}")
        elif location.usage != LocationUsage.internal:
            sheet.error(row.line, "location", f"{location.full_name} is not a stock location (its usage is "
                                              f"{location.usage.value}); opening stock goes in stock or a bin")
        unit = units.get(product.uom_id)
        if unit is not None and unit.rounding and quantity % Decimal(unit.rounding) != 0:
            sheet.error(row.line, "quantity",
                        f"{quantity} is not a multiple of the rounding {Decimal(unit.rounding).normalize()} of unit {unit.name!r}")
        cost = Decimal(product.standard_cost)
        if product.valuation == ValuationMethod.standard:
            if unit_cost is not None and unit_cost != cost:
                sheet.error(row.line, "unit_cost",
                            f"{product.sku} is valued at standard cost {cost}: leave unit_cost empty or give {cost}")
            unit_cost = cost
        elif unit_cost is None:
            if cost == 0:
                sheet.error(row.line, "unit_cost", f"required: product {product.sku} has no cost to take")
            unit_cost = cost
        parsed.append((row, key, (location, product, quantity, unit_cost)))
    check_duplicates(sheet, [(row, key) for row, key, _ in parsed], "sku", "warehouse, location and SKU")
    sheet.errors.extend(_missing_accounts(session, {OPENING_BALANCE_ACCOUNT, STOCK_VALUATION_ACCOUNT}))
    sheet.raise_if_errors()

    created = updated = 0
    by_account: dict[str, Decimal] = {}
    account_cache: dict[int, str] = {}
    now = utcnow()
    for _, _, (location, product, quantity, unit_cost) in parsed:
        unit_cost = Decimal(unit_cost).quantize(UNIT_COST_STEP)
        value = money(quantity * unit_cost)
        quant = session.scalar(
            select(Quant).where(Quant.product_id == product.id, Quant.location_id == location.id,
                                Quant.lot_id.is_(None)).order_by(Quant.id).limit(1)
        )
        if quant is None:
            session.add(Quant(product_id=product.id, location_id=location.id, quantity=quantity, in_date=now))
            created += 1
        else:
            quant.quantity = Decimal(quant.quantity) + quantity
            session.add(quant)
            updated += 1
        if product.valuation == ValuationMethod.avco:
            # Running average over what is in stock, as models.inventory values an incoming move.
            on_hand = Decimal(session.scalar(
                select(func.coalesce(func.sum(ValuationLayer.remaining_qty), 0))
                .where(ValuationLayer.product_id == product.id)
            ))
            total = on_hand * Decimal(product.standard_cost) + value
            product.standard_cost = (total / (on_hand + quantity)).quantize(UNIT_COST_STEP)
            session.add(product)
        session.add(ValuationLayer(
            product_id=product.id, quantity=quantity, unit_cost=unit_cost, value=value,
            remaining_qty=quantity, remaining_value=value, description=f"opening stock {source_key}",
        ))
        session.flush()
        account = _valuation_account(session, product.category_id, account_cache)
        by_account[account] = by_account.get(account, ZERO) + value
    total = sum(by_account.values(), ZERO)
    missing = _missing_accounts(session, set(by_account))
    if missing:
        raise ImportFailed(missing)
    if total != ZERO:
        lines = [LineSpec(code, debit=amount, label="Opening stock") for code, amount in sorted(by_account.items())
                 if amount != ZERO]
        lines.append(LineSpec(OPENING_BALANCE_ACCOUNT, credit=total, label="Opening stock"))
        post_entry(session, source_key=source_key, entry_date=ctx.entry_date, lines=lines, journal="stock",
                   memo=f"Opening stock import ({len(parsed)} rows)")
    return created, updated


# ------------------------------------------------------------------------------------------- balances


class PartnerType(StrEnum):
    customer = "customer"
    supplier = "supplier"


def _import_balances(session: Session, sheet: Sheet, ctx: ImportContext) -> tuple[int, int]:
    source_key = f"opening-balances:{ctx.fingerprint}"
    _refuse_repeat(sheet, session, source_key)
    customers = _in_chunks(session, Customer, "code", {r.cells["code"] for r in sheet.rows})
    suppliers = _in_chunks(session, Supplier, "code", {r.cells["code"] for r in sheet.rows})
    parsed = []
    for row in sheet.rows:
        kind = parse_choice(sheet, row, "partner_type", PartnerType)
        amount = parse_decimal(sheet, row, "amount", places=2, required=True, nonzero=True)
        reference = row.cells.get("reference", "")
        if len(reference) > 100:
            sheet.error(row.line, "reference", "at most 100 characters")
        partner = _BAD
        if kind is not _BAD:
            table = customers if kind == PartnerType.customer else suppliers
            partner = lookup(sheet, row, "code", table, kind.value, required=True)
        key = (kind, partner.id) if not _has_bad(kind, partner) else None
        parsed.append((row, key, (kind, partner, amount, reference)))
    check_duplicates(sheet, [(row, key) for row, key, _ in parsed], "code", "partner")
    sheet.errors.extend(_missing_accounts(session, {OPENING_BALANCE_ACCOUNT, RECEIVABLE_ACCOUNT, PAYABLE_ACCOUNT}))
    sheet.raise_if_errors()

    lines: list[LineSpec] = []
    net = ZERO  # receivables minus payables: what the opening balance account takes the other side of
    for _, _, (kind, partner, amount, reference) in parsed:
        label = f"Opening balance {partner.code}" + (f" {reference}" if reference else "")
        if kind == PartnerType.customer:
            side = {"debit": amount} if amount > 0 else {"credit": -amount}
            lines.append(LineSpec(RECEIVABLE_ACCOUNT, label=label[:200], customer_id=partner.id, **side))
            net += amount
        else:
            side = {"credit": amount} if amount > 0 else {"debit": -amount}
            lines.append(LineSpec(PAYABLE_ACCOUNT, label=label[:200], supplier_id=partner.id, **side))
            net -= amount
    if net > 0:
        lines.append(LineSpec(OPENING_BALANCE_ACCOUNT, credit=net, label="Opening balances"))
    elif net < 0:
        lines.append(LineSpec(OPENING_BALANCE_ACCOUNT, debit=-net, label="Opening balances"))
    post_entry(session, source_key=source_key, entry_date=ctx.entry_date, lines=lines,
               memo=f"Opening balances import ({len(parsed)} rows)")
    return len(parsed), 0


# ------------------------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class ImportContext:
    actor: str
    entry_date: date
    fingerprint: str
    may_set_credit_limit: bool


_IMPORTERS: dict[ImportKind, Callable[[Session, Sheet, ImportContext], tuple[int, int]]] = {
    ImportKind.products: _import_products,
    ImportKind.customers: lambda s, sh, c: _import_partners(s, sh, c, "customer"),
    ImportKind.suppliers: lambda s, sh, c: _import_partners(s, sh, c, "supplier"),
    ImportKind.offers: _import_offers,
    ImportKind.stock: _import_stock,
    ImportKind.balances: _import_balances,
}


def import_csv(
    session: Session,
    kind: ImportKind | str,
    data: bytes | str,
    *,
    actor: str,
    entry_date: date | None = None,
    may_set_credit_limit: bool = True,
    filename: str = "",
) -> ImportSummary:
    """Check every row, then write them all (flush, no commit) and an audit event; or raise ImportFailed with
    every error and write nothing. `entry_date` dates the journal entry of stock and balance imports."""
    kind = ImportKind(kind)
    sheet = read_sheet(kind, data)
    ctx = ImportContext(actor, entry_date or utcnow().date(), _fingerprint(data), may_set_credit_limit)
    # Row errors found while reading (bad field counts) are reported together with the checks' errors.
    created, updated = _IMPORTERS[kind](session, sheet, ctx)
    summary = ImportSummary(kind.value, len(sheet.rows), created, updated)
    session.add(AuditEvent(
        actor=actor[:60], action="import", entity_kind=kind.value, entity_id=ctx.fingerprint,
        data={"rows": summary.rows, "created": created, "updated": updated, "filename": filename[:200]},
    ))
    session.flush()
    return summary


def run_import(engine: Engine, kind: ImportKind | str, data: bytes | str, **kwargs: Any) -> ImportSummary:
    """import_csv in a transaction of its own: committed when the file is good, rolled back otherwise."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return import_csv(session, kind, data, **kwargs)


def iter_errors(exc: ImportFailed) -> Iterator[dict[str, Any]]:
    for e in exc.errors:
        yield {"line": e.line, "column": e.column, "reason": e.reason}


# ------------------------------------------------------------------------------------------- payments
# A bank statement: money received, one payment per row, recorded by models.orders.record_payment exactly as
# finance's form records one (allocation to the named invoice, then the oldest open ones; Dr bank / Cr receivable).
# Not an ImportKind: its answer is per line (created or skipped) and names the orders whose QuoteToCash workflows
# must hear `payment_received` after the commit, which the caller (api/routes/imports.py) does.

PAYMENT_COLUMNS = Columns(("reference", "customer_code", "amount", "payment_date"), ("invoice_number",))
PAYMENTS = "payments"  # the audit trail's entity kind, as ImportKind values are for the other files
MAX_REFERENCE = 60  # customer_payment.reference
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# record_payment names its fields like the JSON API; they are the file's columns too.
_PAYMENT_FIELDS = {"reference", "customer_code", "amount", "payment_date", "invoice_number"}


class PaymentLineStatus(StrEnum):
    created = "created"
    skipped = "skipped"  # this reference was recorded before with the same amount and customer


@dataclass(frozen=True)
class PaymentLine:
    line: int
    reference: str
    customer_code: str
    customer_id: int
    amount: Decimal
    payment_date: date
    status: PaymentLineStatus
    invoice_number: str | None  # the first invoice the payment settles; None when it is all on account
    quote_numbers: tuple[str, ...]  # orders whose QuoteToCash workflows must hear of this payment


@dataclass(frozen=True)
class PaymentImportSummary:
    rows: int
    created: int
    skipped: int
    amount_created: Decimal
    lines: tuple[PaymentLine, ...]


def parse_date(sheet: Sheet, row: Row, column: str, *, required: bool = False) -> Any:
    """YYYY-MM-DD only: 03/04/2026 is March in one country and April in the next, so it is refused, not guessed."""
    text = _cell(row, column)
    if text == "":
        if required:
            sheet.error(row.line, column, "a value is required")
            return _BAD
        return None
    if not _ISO_DATE.fullmatch(text):
        sheet.error(row.line, column, f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-03-31")
        return _BAD
    try:
        return date.fromisoformat(text)
    except ValueError:
        sheet.error(row.line, column, f"{text!r} is not a calendar date")
        return _BAD


def _lock_customers(session: Session, ids: list[int]) -> None:
    """The lock record_payment takes per customer, taken for the whole file first and in id order (two imports
    cannot deadlock): a second import of the same statement waits here, then finds the first one's payments and
    skips them. (On SQLite the transaction already holds the database's write lock: BEGIN IMMEDIATE.)"""
    for i in range(0, len(ids), 500):
        session.execute(select(Customer.id).where(Customer.id.in_(ids[i : i + 500])).order_by(Customer.id)
                        .with_for_update())


def import_payments(session: Session, data: bytes | str, *, actor: str, filename: str = "") -> PaymentImportSummary:
    """Check every row of a bank statement, then record each payment (flush, no commit) and an audit event; or raise
    ImportFailed with every error and write nothing. A row whose reference was recorded before with the same amount
    and customer is skipped (a statement imported twice, or overlapping the last one); the same reference with
    another amount or customer is an error on that row."""
    sheet = read_columns(PAYMENT_COLUMNS, data)
    customers = _in_chunks(session, Customer, "code", {r.cells["customer_code"] for r in sheet.rows})
    _lock_customers(session, sorted(c.id for c in customers.values()))
    # Read after the lock: on PostgreSQL (read committed) these see every payment committed before we got it.
    existing = _in_chunks(session, CustomerPayment, "reference", {r.cells["reference"] for r in sheet.rows})
    invoices = _in_chunks(session, CustomerInvoice, "number",
                          {r.cells.get("invoice_number", "") for r in sheet.rows} - {""})

    parsed: list[tuple[Row, tuple | None, tuple | None]] = []
    for row in sheet.rows:
        reference = row.cells["reference"]
        too_long = len(reference) > MAX_REFERENCE
        if too_long:
            sheet.error(row.line, "reference", f"at most {MAX_REFERENCE} characters")
        customer = lookup(sheet, row, "customer_code", customers, "customer", required=True)
        amount = parse_decimal(sheet, row, "amount", places=2, required=True, positive=True)
        if amount is not _BAD and amount > orders.MAX_AMOUNT:
            sheet.error(row.line, "amount", f"must be at most {orders.MAX_AMOUNT:,}")
            amount = _BAD
        paid_on = parse_date(sheet, row, "payment_date", required=True)
        invoice_number = row.cells.get("invoice_number", "")
        invoice: Any = None
        if invoice_number:
            invoice = invoices.get(invoice_number)
            if invoice is None or invoice.kind != "invoice":
                sheet.error(row.line, "invoice_number", f"no invoice {invoice_number!r}")
                invoice = _BAD
            elif customer is not _BAD and invoice.customer_id != customer.id:
                sheet.error(row.line, "invoice_number",
                            f"invoice {invoice_number} is not an invoice of {customer.code}")
                invoice = _BAD
        key = None if too_long else (reference,)
        if too_long or _has_bad(customer, amount, paid_on, invoice):
            parsed.append((row, key, None))
            continue
        status = PaymentLineStatus.created
        before = existing.get(reference)
        if before is not None:
            status = PaymentLineStatus.skipped
            if before.customer_id != customer.id or money(before.amount) != amount:
                payer = session.get(Customer, before.customer_id)
                sheet.error(row.line, "amount" if before.customer_id == customer.id else "customer_code",
                            f"payment {reference} was already recorded with amount {money(before.amount)} from "
                            f"{payer.code if payer else '?'} on {before.payment_date.isoformat()}: check the reference")
                parsed.append((row, key, None))
                continue
        parsed.append((row, key, (reference, customer, amount, paid_on, invoice_number or None, status)))
    check_duplicates(sheet, [(row, key) for row, key, _ in parsed], "reference", "bank reference")
    sheet.errors.extend(_missing_accounts(session, {orders.BANK_ACCOUNT, orders.RECEIVABLE_ACCOUNT}))
    sheet.raise_if_errors()

    recorded: list[tuple[Row, PaymentLineStatus, CustomerPayment, Customer, list[str]]] = []
    for row, _, (reference, customer, amount, paid_on, invoice_number, status) in parsed:
        try:
            payment, numbers = orders.record_payment(
                session, reference=reference, customer_code=customer.code, amount=amount, payment_date=paid_on,
                recorded_by=actor[:60], invoice_number=invoice_number)
        except orders.OrderInputError as err:
            # Checked above already; should the data layer still refuse, it names the row like any other error.
            # (It refuses before it writes, and the caller's rollback takes back the rows before this one.)
            sheet.error(row.line, err.field if err.field in _PAYMENT_FIELDS else "-", err.reason)
            continue
        recorded.append((row, status, payment, customer, numbers))
    sheet.raise_if_errors()

    invoice_ids = {p.invoice_id for _, _, p, _, _ in recorded if p.invoice_id is not None}
    invoice_numbers = dict(session.execute(
        select(CustomerInvoice.id, CustomerInvoice.number).where(CustomerInvoice.id.in_(sorted(invoice_ids)))
    ).all()) if invoice_ids else {}
    lines = tuple(
        PaymentLine(line=row.line, reference=p.reference, customer_code=customer.code, customer_id=customer.id,
                    amount=money(p.amount), payment_date=p.payment_date, status=status,
                    invoice_number=invoice_numbers.get(p.invoice_id), quote_numbers=tuple(dict.fromkeys(numbers)))
        for row, status, p, customer, numbers in recorded)
    new = [x for x in lines if x.status == PaymentLineStatus.created]
    summary = PaymentImportSummary(rows=len(lines), created=len(new), skipped=len(lines) - len(new),
                                   amount_created=sum((x.amount for x in new), ZERO), lines=lines)
    session.add(AuditEvent(
        actor=actor[:60], action="import", entity_kind=PAYMENTS, entity_id=_fingerprint(data),
        data={"rows": summary.rows, "created": summary.created, "skipped": summary.skipped,
              "amount": str(summary.amount_created), "filename": filename[:200]},
    ))
    session.flush()
    return summary
