"""API data models for master data and stock: the XBase / XCreate / XUpdate / XPublic ladder of the FastAPI
template. None of these has table=True; the tables live in models/masterdata.py.

Create models carry every rule a row must satisfy (lengths, ranges, digits, cross-field rules); a PATCH is
checked by validating the merged row through the Create model, so the same rules hold after an update.
Decimal values travel as JSON strings ("12.50") so money is exact end to end.
Formats (patterns, minimum lengths) are checked on the way in (Create/Update) and not re-checked on the way out
(Public), so a row written by another path (demo data, an older rule) can never turn a read into a 500.
Patterns go through `schema_extra={"pattern": ...}`: sqlmodel.Field silently ignores its `regex=` argument
under pydantic 2 (checked with sqlmodel 0.0.50).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Generic, TypeVar

from pydantic import BaseModel, model_validator
from sqlmodel import Field, SQLModel

from models.common import (
    AccountType,
    BackorderPreference,
    InvoicePolicy,
    LocationUsage,
    PricelistRuleKind,
    ValuationMethod,
)

T = TypeVar("T")

CODE = r"^[A-Za-z0-9][A-Za-z0-9_./-]*$"
CURRENCY = r"^[A-Z]{3}$"
COUNTRY = r"^[A-Z]{2}$"


class Page(BaseModel, Generic[T]):
    """One page of a list: `total` counts every row that matches the filters, not just this page."""

    items: list[T]
    total: int
    offset: int
    limit: int


# ------------------------------------------------------------------------------------------- catalogue


class ProductCategoryBase(SQLModel):
    name: str = Field(min_length=1, max_length=120)
    parent_id: int | None = None
    valuation_account_id: int | None = None
    stock_input_account_id: int | None = None
    stock_output_account_id: int | None = None
    expense_account_id: int | None = None
    income_account_id: int | None = None


class ProductCategoryCreate(ProductCategoryBase):
    @model_validator(mode="after")
    def _no_slash(self):
        if "/" in self.name:
            raise ValueError("name may not contain '/' (it separates levels in the full name)")
        return self


class ProductCategoryUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    parent_id: int | None = None
    valuation_account_id: int | None = None
    stock_input_account_id: int | None = None
    stock_output_account_id: int | None = None
    expense_account_id: int | None = None
    income_account_id: int | None = None


class ProductCategoryPublic(ProductCategoryBase):
    id: int
    full_name: str


class ProductBase(SQLModel):
    sku: str = Field(max_length=40)
    name: str = Field(min_length=1, max_length=200)
    category_id: int
    uom_id: int
    purchase_uom_id: int | None = None
    barcode: str | None = Field(default=None, min_length=1, max_length=40)
    weight_kg: Decimal = Field(default=Decimal(0), ge=0, max_digits=16, decimal_places=3)
    volume_m3: Decimal = Field(default=Decimal(0), ge=0, max_digits=14, decimal_places=6)
    list_price: Decimal = Field(default=Decimal(0), ge=0, max_digits=16, decimal_places=2)
    standard_cost: Decimal = Field(default=Decimal(0), ge=0, max_digits=18, decimal_places=4)
    valuation: ValuationMethod = ValuationMethod.fifo
    invoice_policy: InvoicePolicy = InvoicePolicy.delivered
    tax_id: int | None = None
    active: bool = True


class ProductCreate(ProductBase):
    sku: str = Field(min_length=1, max_length=40, schema_extra={"pattern": CODE})


class ProductUpdate(SQLModel):
    sku: str | None = Field(default=None, min_length=1, max_length=40, schema_extra={"pattern": CODE})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category_id: int | None = None
    uom_id: int | None = None
    purchase_uom_id: int | None = None
    barcode: str | None = Field(default=None, min_length=1, max_length=40)
    weight_kg: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    volume_m3: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=6)
    list_price: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    standard_cost: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=4)
    valuation: ValuationMethod | None = None
    invoice_policy: InvoicePolicy | None = None
    tax_id: int | None = None
    active: bool | None = None


class ProductPublic(ProductBase):
    id: int
    purchase_uom_id: int


# ------------------------------------------------------------------------------------------- partners


class AddressBase(SQLModel):
    kind: str = Field(default="delivery", max_length=20)
    street: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postcode: str = Field(min_length=1, max_length=20)
    country: str = Field(default="DE", max_length=2)


class AddressCreate(AddressBase):
    kind: str = Field(default="delivery", schema_extra={"pattern": r"^(invoice|delivery|other)$"})
    country: str = Field(default="DE", schema_extra={"pattern": COUNTRY})


class AddressUpdate(SQLModel):
    kind: str | None = Field(default=None, schema_extra={"pattern": r"^(invoice|delivery|other)$"})
    street: str | None = Field(default=None, min_length=1, max_length=200)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    postcode: str | None = Field(default=None, min_length=1, max_length=20)
    country: str | None = Field(default=None, schema_extra={"pattern": COUNTRY})


class AddressPublic(AddressBase):
    id: int


class CustomerBase(SQLModel):
    code: str = Field(max_length=20)
    name: str = Field(min_length=1, max_length=200)
    segment: str = Field(min_length=1, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    pricelist_id: int | None = None
    payment_term_id: int | None = None
    credit_limit: Decimal = Field(default=Decimal(0), ge=0, max_digits=16, decimal_places=2)
    backorder_preference: BackorderPreference = BackorderPreference.ship_available
    branch_id: int | None = None
    active: bool = True


class CustomerCreate(CustomerBase):
    code: str = Field(min_length=1, max_length=20, schema_extra={"pattern": CODE})
    email: str | None = Field(default=None, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    addresses: list[AddressCreate] = Field(default_factory=list, max_length=50)


class CustomerUpdate(SQLModel):
    code: str | None = Field(default=None, min_length=1, max_length=20, schema_extra={"pattern": CODE})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    segment: str | None = Field(default=None, min_length=1, max_length=40)
    email: str | None = Field(default=None, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    phone: str | None = Field(default=None, max_length=40)
    pricelist_id: int | None = None
    payment_term_id: int | None = None
    credit_limit: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    backorder_preference: BackorderPreference | None = None
    branch_id: int | None = None
    active: bool | None = None


class CustomerPublic(CustomerBase):
    id: int
    addresses: list[AddressPublic] = Field(default_factory=list)


class SupplierBase(SQLModel):
    code: str = Field(max_length=20)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=200)
    payment_term_id: int | None = None
    default_lead_time_days: int = Field(default=7, ge=0, le=365)
    active: bool = True


class SupplierCreate(SupplierBase):
    code: str = Field(min_length=1, max_length=20, schema_extra={"pattern": CODE})
    email: str | None = Field(default=None, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    addresses: list[AddressCreate] = Field(default_factory=list, max_length=50)


class SupplierUpdate(SQLModel):
    code: str | None = Field(default=None, min_length=1, max_length=20, schema_extra={"pattern": CODE})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=200, schema_extra={"pattern": r"^[^@\s]+@[^@\s]+$"})
    payment_term_id: int | None = None
    default_lead_time_days: int | None = Field(default=None, ge=0, le=365)
    active: bool | None = None


class SupplierPublic(SupplierBase):
    id: int
    addresses: list[AddressPublic] = Field(default_factory=list)


class SupplierOfferBase(SQLModel):
    supplier_id: int
    product_id: int
    price: Decimal = Field(ge=0, max_digits=18, decimal_places=4)
    min_qty: Decimal = Field(default=Decimal(1), ge=0, max_digits=16, decimal_places=3)
    pack_multiple: Decimal = Field(default=Decimal(1), gt=0, max_digits=16, decimal_places=3)
    lead_time_days: int = Field(default=7, ge=0, le=365)


class SupplierOfferCreate(SupplierOfferBase):
    pass


class SupplierOfferUpdate(SQLModel):
    price: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=4)
    min_qty: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    pack_multiple: Decimal | None = Field(default=None, gt=0, max_digits=16, decimal_places=3)
    lead_time_days: int | None = Field(default=None, ge=0, le=365)


class SupplierOfferPublic(SupplierOfferBase):
    id: int
    sku: str
    supplier_code: str


# ------------------------------------------------------------------------------------------- warehouses


class WarehousePublic(SQLModel):
    id: int
    branch_id: int
    code: str
    name: str


class LocationPublic(SQLModel):
    id: int
    name: str
    full_name: str
    usage: LocationUsage
    parent_id: int | None
    warehouse_id: int | None
    barcode: str | None


# ------------------------------------------------------------------------------------------- prices


class PricelistBase(SQLModel):
    name: str = Field(min_length=1, max_length=120)
    currency: str = Field(default="EUR", max_length=3)


class PricelistCreate(PricelistBase):
    currency: str = Field(default="EUR", schema_extra={"pattern": CURRENCY})


class PricelistUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    currency: str | None = Field(default=None, schema_extra={"pattern": CURRENCY})


class PricelistPublic(PricelistBase):
    id: int


class PricelistRuleBase(SQLModel):
    product_id: int | None = None
    category_id: int | None = None
    min_quantity: Decimal = Field(default=Decimal(0), ge=0, max_digits=16, decimal_places=3)
    date_start: date | None = None
    date_end: date | None = None
    kind: PricelistRuleKind
    fixed_price: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    percent_discount: Decimal | None = Field(default=None, ge=-100, le=100, max_digits=7, decimal_places=3)
    base: str = Field(default="list_price", max_length=20)
    price_round: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    price_surcharge: Decimal | None = Field(default=None, max_digits=16, decimal_places=2)
    min_margin_percent: Decimal | None = Field(default=None, max_digits=7, decimal_places=3)
    max_margin_percent: Decimal | None = Field(default=None, max_digits=7, decimal_places=3)


class PricelistRuleCreate(PricelistRuleBase):
    base: str = Field(default="list_price", schema_extra={"pattern": r"^(list_price|standard_cost)$"})

    @model_validator(mode="after")
    def _consistent(self):
        if self.product_id is not None and self.category_id is not None:
            raise ValueError("a rule applies to a product or to a category, not both")
        if self.kind == PricelistRuleKind.fixed and self.fixed_price is None:
            raise ValueError("fixed_price is required for a rule of kind 'fixed'")
        if self.kind in (PricelistRuleKind.discount, PricelistRuleKind.formula) and self.percent_discount is None:
            raise ValueError(f"percent_discount is required for a rule of kind '{self.kind.value}'")
        if self.date_start and self.date_end and self.date_end < self.date_start:
            raise ValueError("date_end is before date_start")
        if (
            self.min_margin_percent is not None
            and self.max_margin_percent is not None
            and self.max_margin_percent < self.min_margin_percent
        ):
            raise ValueError("max_margin_percent is below min_margin_percent")
        return self


class PricelistRuleUpdate(SQLModel):
    product_id: int | None = None
    category_id: int | None = None
    min_quantity: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    date_start: date | None = None
    date_end: date | None = None
    kind: PricelistRuleKind | None = None
    fixed_price: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    percent_discount: Decimal | None = Field(default=None, ge=-100, le=100, max_digits=7, decimal_places=3)
    base: str | None = Field(default=None, schema_extra={"pattern": r"^(list_price|standard_cost)$"})
    price_round: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=2)
    price_surcharge: Decimal | None = Field(default=None, max_digits=16, decimal_places=2)
    min_margin_percent: Decimal | None = Field(default=None, max_digits=7, decimal_places=3)
    max_margin_percent: Decimal | None = Field(default=None, max_digits=7, decimal_places=3)


class PricelistRulePublic(PricelistRuleBase):
    id: int
    pricelist_id: int


# ------------------------------------------------------------------------------------------- rules, taxes


class ReorderRuleBase(SQLModel):
    product_id: int
    warehouse_id: int
    min_qty: Decimal = Field(ge=0, max_digits=16, decimal_places=3)
    max_qty: Decimal = Field(ge=0, max_digits=16, decimal_places=3)
    qty_multiple: Decimal = Field(default=Decimal(1), ge=0, max_digits=16, decimal_places=3)
    lead_days: int = Field(default=0, ge=0, le=365)
    supplier_id: int | None = None


class ReorderRuleCreate(ReorderRuleBase):
    @model_validator(mode="after")
    def _min_max(self):
        if self.max_qty < self.min_qty:
            raise ValueError("max_qty is below min_qty")
        return self


class ReorderRuleUpdate(SQLModel):
    min_qty: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    max_qty: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    qty_multiple: Decimal | None = Field(default=None, ge=0, max_digits=16, decimal_places=3)
    lead_days: int | None = Field(default=None, ge=0, le=365)
    supplier_id: int | None = None


class ReorderRulePublic(ReorderRuleBase):
    id: int


class TaxBase(SQLModel):
    name: str = Field(min_length=1, max_length=60)
    rate: Decimal = Field(ge=0, le=100, max_digits=7, decimal_places=3)
    account_id: int


class TaxCreate(TaxBase):
    pass


class TaxUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=60)
    rate: Decimal | None = Field(default=None, ge=0, le=100, max_digits=7, decimal_places=3)
    account_id: int | None = None


class TaxPublic(TaxBase):
    id: int


class AccountPublic(SQLModel):
    id: int
    code: str
    name: str
    type: AccountType
    reconcile: bool


# ------------------------------------------------------------------------------------------- stock


class StockLevelPublic(SQLModel):
    product_id: int
    sku: str
    product_name: str
    warehouse_id: int
    warehouse_code: str
    on_hand: Decimal
    reserved: Decimal
    available: Decimal
