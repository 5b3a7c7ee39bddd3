"""Master data of a distributor: company, warehouses and locations, catalogue, partners, prices, rules, accounts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import CheckConstraint, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.common import (
    MONEY,
    PERCENT,
    QTY,
    RATIO,
    UNIT_COST,
    AccountType,
    BackorderPreference,
    InvoicePolicy,
    LocationUsage,
    PricelistRuleKind,
    ValuationMethod,
)


class Company(SQLModel, table=True):
    __tablename__ = "company"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    currency: str = Field(default="EUR", max_length=3)


class Branch(SQLModel, table=True):
    __tablename__ = "branch"
    id: int | None = Field(default=None, primary_key=True)
    company_id: int = Field(foreign_key="company.id", index=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=120)


class Warehouse(SQLModel, table=True):
    __tablename__ = "warehouse"
    id: int | None = Field(default=None, primary_key=True)
    branch_id: int = Field(foreign_key="branch.id", index=True)
    code: str = Field(max_length=10, unique=True)
    name: str = Field(max_length=120)


class Location(SQLModel, table=True):
    """A node of the location tree. `path` holds the ancestors' ids ("/1/4/9/") so a subtree is a prefix match."""

    __tablename__ = "location"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    full_name: str = Field(max_length=400, unique=True)
    usage: LocationUsage = Field(index=True)
    parent_id: int | None = Field(default=None, foreign_key="location.id", index=True)
    warehouse_id: int | None = Field(default=None, foreign_key="warehouse.id", index=True)
    path: str = Field(default="/", max_length=400, index=True)
    barcode: str | None = Field(default=None, max_length=40, unique=True)


class Account(SQLModel, table=True):
    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=120)
    type: AccountType
    # Reconcilable accounts (receivables, payables, interim stock) are matched line by line later.
    reconcile: bool = False


class Tax(SQLModel, table=True):
    __tablename__ = "tax"
    __table_args__ = (CheckConstraint("rate >= 0 AND rate <= 100", name="tax_rate_range"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60, unique=True)
    rate: Decimal = Field(**PERCENT)
    account_id: int = Field(foreign_key="account.id")


class ProductCategory(SQLModel, table=True):
    """Categories carry the stock accounts, as in Odoo; a child without its own takes the parent's."""

    __tablename__ = "product_category"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    full_name: str = Field(max_length=400, unique=True)
    parent_id: int | None = Field(default=None, foreign_key="product_category.id", index=True)
    valuation_account_id: int | None = Field(default=None, foreign_key="account.id")
    stock_input_account_id: int | None = Field(default=None, foreign_key="account.id")
    stock_output_account_id: int | None = Field(default=None, foreign_key="account.id")
    expense_account_id: int | None = Field(default=None, foreign_key="account.id")
    income_account_id: int | None = Field(default=None, foreign_key="account.id")


class UnitOfMeasure(SQLModel, table=True):
    """Units convert within a category through `ratio` to the category's reference unit (ratio 1)."""

    __tablename__ = "uom"
    __table_args__ = (CheckConstraint("ratio > 0", name="uom_ratio_positive"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True)
    category: str = Field(max_length=40)
    ratio: Decimal = Field(default=Decimal(1), **RATIO)
    rounding: Decimal = Field(default=Decimal("0.001"), **QTY)


class Product(SQLModel, table=True):
    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint("list_price >= 0", name="product_list_price_nonneg"),
        CheckConstraint("standard_cost >= 0", name="product_cost_nonneg"),
    )
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=200, index=True)
    category_id: int = Field(foreign_key="product_category.id", index=True)
    uom_id: int = Field(foreign_key="uom.id")
    purchase_uom_id: int = Field(foreign_key="uom.id")
    barcode: str | None = Field(default=None, max_length=40, unique=True)
    weight_kg: Decimal = Field(default=Decimal(0), **QTY)
    volume_m3: Decimal = Field(default=Decimal(0), max_digits=14, decimal_places=6)
    list_price: Decimal = Field(default=Decimal(0), **MONEY)
    # Standard cost for `standard`; the running average for `avco`; informational for `fifo`.
    standard_cost: Decimal = Field(default=Decimal(0), **UNIT_COST)
    valuation: ValuationMethod = ValuationMethod.fifo
    invoice_policy: InvoicePolicy = InvoicePolicy.delivered
    tax_id: int | None = Field(default=None, foreign_key="tax.id")
    active: bool = True


class Pricelist(SQLModel, table=True):
    __tablename__ = "pricelist"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    currency: str = Field(default="EUR", max_length=3)


class PricelistRule(SQLModel, table=True):
    """Odoo-style rule (erp-anchors b7): the most specific applicable rule wins (product > category > all)."""

    __tablename__ = "pricelist_rule"
    __table_args__ = (CheckConstraint("min_quantity >= 0", name="rule_min_qty_nonneg"),)
    id: int | None = Field(default=None, primary_key=True)
    pricelist_id: int = Field(foreign_key="pricelist.id", index=True)
    product_id: int | None = Field(default=None, foreign_key="product.id", index=True)
    category_id: int | None = Field(default=None, foreign_key="product_category.id")
    min_quantity: Decimal = Field(default=Decimal(0), **QTY)
    date_start: date | None = None
    date_end: date | None = None
    kind: PricelistRuleKind
    fixed_price: Decimal | None = Field(default=None, **MONEY)
    percent_discount: Decimal | None = Field(default=None, **PERCENT)
    # formula (workflows/rules.rule_price): price = base * (1 - discount/100), rounded to a multiple of
    # `price_round` before `price_surcharge` is added, then kept within base * (1 + min_margin%/100) ..
    # base * (1 + max_margin%/100) when those are set; base is the list price or the standard cost (`base`).
    base: str = Field(default="list_price", max_length=20)
    price_round: Decimal | None = Field(default=None, **MONEY)
    price_surcharge: Decimal | None = Field(default=None, **MONEY)
    min_margin_percent: Decimal | None = Field(default=None, **PERCENT)
    max_margin_percent: Decimal | None = Field(default=None, **PERCENT)


class PaymentTerm(SQLModel, table=True):
    __tablename__ = "payment_term"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60, unique=True)
    days: int = Field(default=30, ge=0, le=365)


class Customer(SQLModel, table=True):
    __tablename__ = "customer"
    __table_args__ = (CheckConstraint("credit_limit >= 0", name="customer_credit_limit_nonneg"),)
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=200, index=True)
    segment: str = Field(max_length=40, index=True)
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    pricelist_id: int | None = Field(default=None, foreign_key="pricelist.id")
    payment_term_id: int | None = Field(default=None, foreign_key="payment_term.id")
    credit_limit: Decimal = Field(default=Decimal(0), **MONEY)
    backorder_preference: BackorderPreference = BackorderPreference.ship_available
    branch_id: int | None = Field(default=None, foreign_key="branch.id")
    active: bool = True


class Supplier(SQLModel, table=True):
    __tablename__ = "supplier"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=200, index=True)
    email: str | None = Field(default=None, max_length=200)
    payment_term_id: int | None = Field(default=None, foreign_key="payment_term.id")
    default_lead_time_days: int = Field(default=7, ge=0, le=365)
    active: bool = True


class Address(SQLModel, table=True):
    __tablename__ = "address"
    __table_args__ = (
        CheckConstraint(
            "(customer_id IS NULL) <> (supplier_id IS NULL)", name="address_one_owner"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    supplier_id: int | None = Field(default=None, foreign_key="supplier.id", index=True)
    kind: str = Field(default="delivery", max_length=20)  # invoice, delivery, other
    street: str = Field(max_length=200)
    city: str = Field(max_length=100)
    postcode: str = Field(max_length=20)
    country: str = Field(default="DE", max_length=2)


class SupplierOffer(SQLModel, table=True):
    __tablename__ = "supplier_offer"
    __table_args__ = (
        UniqueConstraint("supplier_id", "product_id", "min_qty", name="supplier_offer_unique"),
        CheckConstraint("price >= 0", name="offer_price_nonneg"),
        CheckConstraint("pack_multiple > 0", name="offer_multiple_positive"),
    )
    id: int | None = Field(default=None, primary_key=True)
    supplier_id: int = Field(foreign_key="supplier.id", index=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    price: Decimal = Field(**UNIT_COST)
    min_qty: Decimal = Field(default=Decimal(1), **QTY)
    pack_multiple: Decimal = Field(default=Decimal(1), **QTY)
    lead_time_days: int = Field(default=7, ge=0, le=365)


class ReorderRule(SQLModel, table=True):
    """Odoo orderpoint (erp-anchors b1): min, max, multiple and lead time per product and warehouse."""

    __tablename__ = "reorder_rule"
    __table_args__ = (
        UniqueConstraint("product_id", "warehouse_id", name="reorder_rule_unique"),
        CheckConstraint("min_qty >= 0 AND max_qty >= min_qty", name="reorder_min_max"),
        CheckConstraint("qty_multiple >= 0", name="reorder_multiple_nonneg"),
    )
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    warehouse_id: int = Field(foreign_key="warehouse.id", index=True)
    min_qty: Decimal = Field(**QTY)
    max_qty: Decimal = Field(**QTY)
    qty_multiple: Decimal = Field(default=Decimal(1), **QTY)
    lead_days: int = Field(default=0, ge=0, le=365)
    supplier_id: int | None = Field(default=None, foreign_key="supplier.id")
