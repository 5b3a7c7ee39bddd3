"""Products and product categories. Purchasing maintains the catalogue; everyone logged in reads it."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import select

from api.deps import CsrfProtected, CurrentUser, SessionDep, require_roles
from api.routes.common import (
    Limit,
    Offset,
    TextQuery,
    apply_patch,
    check_refs,
    contains,
    get_or_404,
    insert_row,
    invalid,
    page,
    page_of,
    record_update,
    sort_literal,
)
from models.common import ValuationMethod
from models.masterdata import Account, Product, ProductCategory, Tax, UnitOfMeasure
from models.masterdata_api import (
    Page,
    ProductCategoryCreate,
    ProductCategoryPublic,
    ProductCategoryUpdate,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
)
from models.users import User

CATALOGUE_WRITERS = ("purchasing", "purchasing-manager")
CatalogueWriter = Annotated[User, Depends(require_roles(*CATALOGUE_WRITERS))]
SEPARATOR = " / "

router = APIRouter(tags=["catalogue"], dependencies=[CsrfProtected])

# ------------------------------------------------------------------------------------------- categories

CategorySort = sort_literal("full_name", "name", "id")
_CATEGORY_SORT = {"full_name": ProductCategory.full_name, "name": ProductCategory.name, "id": ProductCategory.id}
_CATEGORY_ACCOUNTS = (
    "valuation_account_id",
    "stock_input_account_id",
    "stock_output_account_id",
    "expense_account_id",
    "income_account_id",
)


def _category_refs(values: dict) -> dict:
    refs = {"parent_id": (ProductCategory, values.get("parent_id"))}
    refs.update({f: (Account, values.get(f)) for f in _CATEGORY_ACCOUNTS})
    return refs


def descendant_ids(session, category: ProductCategory) -> list[int]:
    prefix = category.full_name + SEPARATOR
    return list(session.scalars(select(ProductCategory.id).where(ProductCategory.full_name.startswith(prefix))))


@router.get("/product-categories", response_model=Page[ProductCategoryPublic])
def list_categories(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    parent_id: int | None = None,
    sort: CategorySort = "full_name",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(ProductCategory)
    if (match := contains(q, ProductCategory.full_name)) is not None:
        stmt = stmt.where(match)
    if parent_id is not None:
        stmt = stmt.where(ProductCategory.parent_id == parent_id)
    rows, total = page_of(session, stmt, sort=sort, columns=_CATEGORY_SORT, tie=ProductCategory.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/product-categories/{category_id}", response_model=ProductCategoryPublic)
def read_category(category_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, ProductCategory, category_id, "product category")


@router.post("/product-categories", response_model=ProductCategoryPublic, status_code=status.HTTP_201_CREATED)
def create_category(body: ProductCategoryCreate, session: SessionDep, user: CatalogueWriter):
    values = body.model_dump()
    check_refs(session, _category_refs(values))
    parent = session.get(ProductCategory, body.parent_id) if body.parent_id else None
    full_name = f"{parent.full_name}{SEPARATOR}{body.name}" if parent else body.name
    row = ProductCategory(**values, full_name=full_name)
    return insert_row(session, user, row)


@router.patch("/product-categories/{category_id}", response_model=ProductCategoryPublic)
def update_category(category_id: int, body: ProductCategoryUpdate, session: SessionDep, user: CatalogueWriter):
    row = get_or_404(session, ProductCategory, category_id, "product category")
    changes = body.model_dump(exclude_unset=True)
    check_refs(session, _category_refs(changes))
    below = descendant_ids(session, row)
    if changes.get("parent_id") is not None and (changes["parent_id"] == row.id or changes["parent_id"] in below):
        raise invalid("parent_id", "a category cannot be moved below itself", value=changes["parent_id"])
    old_full = row.full_name
    changed = apply_patch(row, changes, ProductCategoryCreate)
    if "name" in changed or "parent_id" in changed:
        parent = session.get(ProductCategory, row.parent_id) if row.parent_id else None
        row.full_name = f"{parent.full_name}{SEPARATOR}{row.name}" if parent else row.name
        # The children's full names start with this one's: rewrite the prefix down the subtree.
        for child in session.scalars(select(ProductCategory).where(ProductCategory.id.in_(below))):
            child.full_name = row.full_name + child.full_name[len(old_full):]
        changed["full_name"] = row.full_name
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return row


# ------------------------------------------------------------------------------------------- products

ProductSort = sort_literal("sku", "name", "list_price", "standard_cost", "id")
_PRODUCT_SORT = {
    "sku": Product.sku,
    "name": Product.name,
    "list_price": Product.list_price,
    "standard_cost": Product.standard_cost,
    "id": Product.id,
}


def _check_product(session, values: dict) -> None:
    check_refs(session, {
        "category_id": (ProductCategory, values.get("category_id")),
        "uom_id": (UnitOfMeasure, values.get("uom_id")),
        "purchase_uom_id": (UnitOfMeasure, values.get("purchase_uom_id")),
        "tax_id": (Tax, values.get("tax_id")),
    })
    uom = session.get(UnitOfMeasure, values["uom_id"])
    purchase = session.get(UnitOfMeasure, values["purchase_uom_id"])
    if uom.category != purchase.category:
        raise invalid(
            "purchase_uom_id",
            f"purchase unit {purchase.name!r} ({purchase.category}) does not convert to {uom.name!r} ({uom.category})",
            value=values["purchase_uom_id"],
        )


@router.get("/products", response_model=Page[ProductPublic])
def list_products(
    session: SessionDep,
    _: CurrentUser,
    q: Annotated[str | None, Query(max_length=100, description="text in SKU, name or barcode")] = None,
    category_id: Annotated[int | None, Query(description="this category and the ones below it")] = None,
    active: bool | None = None,
    valuation: ValuationMethod | None = None,
    sort: ProductSort = "sku",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Product)
    if (match := contains(q, Product.sku, Product.name, Product.barcode)) is not None:
        stmt = stmt.where(match)
    if category_id is not None:
        category = session.get(ProductCategory, category_id)
        ids = [category_id] + (descendant_ids(session, category) if category else [])
        stmt = stmt.where(Product.category_id.in_(ids))
    if active is not None:
        stmt = stmt.where(Product.active == active)
    if valuation is not None:
        stmt = stmt.where(Product.valuation == valuation)
    rows, total = page_of(session, stmt, sort=sort, columns=_PRODUCT_SORT, tie=Product.id, offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/products/{product_id}", response_model=ProductPublic)
def read_product(product_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Product, product_id, "product")


@router.post("/products", response_model=ProductPublic, status_code=status.HTTP_201_CREATED)
def create_product(body: ProductCreate, session: SessionDep, user: CatalogueWriter):
    values = body.model_dump()
    values["purchase_uom_id"] = values["purchase_uom_id"] or values["uom_id"]
    _check_product(session, values)
    row = Product(**values)
    return insert_row(session, user, row)


@router.patch("/products/{product_id}", response_model=ProductPublic)
def update_product(product_id: int, body: ProductUpdate, session: SessionDep, user: CatalogueWriter):
    row = get_or_404(session, Product, product_id, "product")
    changes = body.model_dump(exclude_unset=True)
    if "purchase_uom_id" in changes and changes["purchase_uom_id"] is None:
        changes["purchase_uom_id"] = changes.get("uom_id") or row.uom_id  # null: buy in the product's own unit
    changed = apply_patch(row, changes, ProductCreate, lambda merged: _check_product(session, merged))
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return row
