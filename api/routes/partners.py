"""Customers (sales), suppliers and their offers (purchasing), with addresses.

A customer's credit limit is the credit controller's decision (ERPNext's credit-controller role, erp-anchors
b5): sales may create customers and change their details, but setting a non-zero limit or changing one needs
credit-controller or cfo (or admin).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlmodel import Session

from api.deps import CsrfProtected, CurrentUser, SessionDep, current_roles, has_role, require_roles
from api.routes.common import (
    Limit,
    Offset,
    TextQuery,
    apply_patch,
    check_refs,
    contains,
    get_or_404,
    invalid,
    page,
    page_of,
    patch_row,
    record_create,
    record_update,
    sort_literal,
)
from models.common import ZERO
from models.masterdata import (
    Address,
    Branch,
    Customer,
    PaymentTerm,
    Pricelist,
    Product,
    Supplier,
    SupplierOffer,
)
from models.masterdata_api import (
    AddressCreate,
    AddressPublic,
    AddressUpdate,
    CustomerCreate,
    CustomerPublic,
    CustomerUpdate,
    Page,
    SupplierCreate,
    SupplierOfferCreate,
    SupplierOfferPublic,
    SupplierOfferUpdate,
    SupplierPublic,
    SupplierUpdate,
)
from models.users import User

SALES_WRITERS = ("sales", "sales-manager", "credit-controller")
CREDIT_DECIDERS = ("credit-controller", "cfo")
PURCHASING_WRITERS = ("purchasing", "purchasing-manager")
SalesWriter = Annotated[User, Depends(require_roles(*SALES_WRITERS))]
PurchasingWriter = Annotated[User, Depends(require_roles(*PURCHASING_WRITERS))]

router = APIRouter(tags=["partners"], dependencies=[CsrfProtected])


def _addresses(session: Session, owner: str, ids: list[int]) -> dict[int, list[Address]]:
    column = Address.customer_id if owner == "customer" else Address.supplier_id
    found: dict[int, list[Address]] = {i: [] for i in ids}
    if ids:
        for a in session.scalars(select(Address).where(column.in_(ids)).order_by(Address.id)):
            found[getattr(a, f"{owner}_id")].append(a)
    return found


def _with_addresses(session: Session, owner: str, rows: list, public):
    by_owner = _addresses(session, owner, [r.id for r in rows])
    return [
        public.model_validate(r, update={"addresses": [AddressPublic.model_validate(a) for a in by_owner[r.id]]})
        for r in rows
    ]


def _add_addresses(session: Session, owner: str, owner_id: int, addresses: list[AddressCreate]) -> list[Address]:
    made = [Address(**a.model_dump(), **{f"{owner}_id": owner_id}) for a in addresses]
    session.add_all(made)
    return made


def _patch_address(session: Session, user: User, owner: str, owner_id: int, address_id: int, body: AddressUpdate):
    row = session.get(Address, address_id)
    if row is None or getattr(row, f"{owner}_id") != owner_id:
        raise HTTPException(status_code=404, detail=f"address {address_id} of {owner} {owner_id} not found")
    return patch_row(session, user, row, body, AddressCreate)


# ------------------------------------------------------------------------------------------- customers

CustomerSort = sort_literal("code", "name", "segment", "credit_limit", "id")
_CUSTOMER_SORT = {
    "code": Customer.code,
    "name": Customer.name,
    "segment": Customer.segment,
    "credit_limit": Customer.credit_limit,
    "id": Customer.id,
}


def _customer_refs(values: dict) -> dict:
    return {
        "pricelist_id": (Pricelist, values.get("pricelist_id")),
        "payment_term_id": (PaymentTerm, values.get("payment_term_id")),
        "branch_id": (Branch, values.get("branch_id")),
    }


def _may_decide_credit(request: Request) -> bool:
    return has_role(current_roles(request), *CREDIT_DECIDERS)


@router.get("/customers", response_model=Page[CustomerPublic])
def list_customers(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    segment: str | None = None,
    pricelist_id: int | None = None,
    active: bool | None = None,
    sort: CustomerSort = "code",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Customer)
    if (match := contains(q, Customer.code, Customer.name, Customer.email)) is not None:
        stmt = stmt.where(match)
    if segment is not None:
        stmt = stmt.where(Customer.segment == segment)
    if pricelist_id is not None:
        stmt = stmt.where(Customer.pricelist_id == pricelist_id)
    if active is not None:
        stmt = stmt.where(Customer.active == active)
    rows, total = page_of(session, stmt, sort=sort, columns=_CUSTOMER_SORT, tie=Customer.id,
                          offset=offset, limit=limit)
    return page(_with_addresses(session, "customer", rows, CustomerPublic), total, offset, limit)


@router.get("/customers/{customer_id}", response_model=CustomerPublic)
def read_customer(customer_id: int, session: SessionDep, _: CurrentUser):
    row = get_or_404(session, Customer, customer_id, "customer")
    return _with_addresses(session, "customer", [row], CustomerPublic)[0]


@router.post("/customers", response_model=CustomerPublic, status_code=status.HTTP_201_CREATED)
def create_customer(body: CustomerCreate, request: Request, session: SessionDep, user: SalesWriter):
    values = body.model_dump(exclude={"addresses"})
    check_refs(session, _customer_refs(values))
    if body.credit_limit != ZERO and not _may_decide_credit(request):
        raise invalid("credit_limit", "only a credit controller or the CFO may set a credit limit",
                      value=str(body.credit_limit))
    row = Customer(**values)
    session.add(row)
    session.flush()
    _add_addresses(session, "customer", row.id, body.addresses)
    record_create(session, user, row, body.model_dump())
    session.commit()
    return _with_addresses(session, "customer", [row], CustomerPublic)[0]


@router.patch("/customers/{customer_id}", response_model=CustomerPublic)
def update_customer(customer_id: int, body: CustomerUpdate, request: Request, session: SessionDep, user: SalesWriter):
    row = get_or_404(session, Customer, customer_id, "customer")
    changes = body.model_dump(exclude_unset=True)
    if "credit_limit" in changes and changes["credit_limit"] != row.credit_limit and not _may_decide_credit(request):
        raise invalid("credit_limit", "only a credit controller or the CFO may change a credit limit",
                      value=str(changes["credit_limit"]))
    changed = apply_patch(row, changes, CustomerCreate, lambda merged: check_refs(session, _customer_refs(merged)))
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return _with_addresses(session, "customer", [row], CustomerPublic)[0]


@router.post("/customers/{customer_id}/addresses", response_model=AddressPublic, status_code=status.HTTP_201_CREATED)
def add_customer_address(customer_id: int, body: AddressCreate, session: SessionDep, user: SalesWriter):
    get_or_404(session, Customer, customer_id, "customer")
    (row,) = _add_addresses(session, "customer", customer_id, [body])
    record_create(session, user, row)
    session.commit()
    return row


@router.patch("/customers/{customer_id}/addresses/{address_id}", response_model=AddressPublic)
def update_customer_address(
    customer_id: int, address_id: int, body: AddressUpdate, session: SessionDep, user: SalesWriter
):
    return _patch_address(session, user, "customer", customer_id, address_id, body)


# ------------------------------------------------------------------------------------------- suppliers

SupplierSort = sort_literal("code", "name", "default_lead_time_days", "id")
_SUPPLIER_SORT = {
    "code": Supplier.code,
    "name": Supplier.name,
    "default_lead_time_days": Supplier.default_lead_time_days,
    "id": Supplier.id,
}


@router.get("/suppliers", response_model=Page[SupplierPublic])
def list_suppliers(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    active: bool | None = None,
    sort: SupplierSort = "code",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Supplier)
    if (match := contains(q, Supplier.code, Supplier.name, Supplier.email)) is not None:
        stmt = stmt.where(match)
    if active is not None:
        stmt = stmt.where(Supplier.active == active)
    rows, total = page_of(session, stmt, sort=sort, columns=_SUPPLIER_SORT, tie=Supplier.id,
                          offset=offset, limit=limit)
    return page(_with_addresses(session, "supplier", rows, SupplierPublic), total, offset, limit)


@router.get("/suppliers/{supplier_id}", response_model=SupplierPublic)
def read_supplier(supplier_id: int, session: SessionDep, _: CurrentUser):
    row = get_or_404(session, Supplier, supplier_id, "supplier")
    return _with_addresses(session, "supplier", [row], SupplierPublic)[0]


@router.post("/suppliers", response_model=SupplierPublic, status_code=status.HTTP_201_CREATED)
def create_supplier(body: SupplierCreate, session: SessionDep, user: PurchasingWriter):
    values = body.model_dump(exclude={"addresses"})
    check_refs(session, {"payment_term_id": (PaymentTerm, values.get("payment_term_id"))})
    row = Supplier(**values)
    session.add(row)
    session.flush()
    _add_addresses(session, "supplier", row.id, body.addresses)
    record_create(session, user, row, body.model_dump())
    session.commit()
    return _with_addresses(session, "supplier", [row], SupplierPublic)[0]


@router.patch("/suppliers/{supplier_id}", response_model=SupplierPublic)
def update_supplier(supplier_id: int, body: SupplierUpdate, session: SessionDep, user: PurchasingWriter):
    row = get_or_404(session, Supplier, supplier_id, "supplier")
    changed = apply_patch(
        row, body.model_dump(exclude_unset=True), SupplierCreate,
        lambda merged: check_refs(session, {"payment_term_id": (PaymentTerm, merged.get("payment_term_id"))}),
    )
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return _with_addresses(session, "supplier", [row], SupplierPublic)[0]


@router.post("/suppliers/{supplier_id}/addresses", response_model=AddressPublic, status_code=status.HTTP_201_CREATED)
def add_supplier_address(supplier_id: int, body: AddressCreate, session: SessionDep, user: PurchasingWriter):
    get_or_404(session, Supplier, supplier_id, "supplier")
    (row,) = _add_addresses(session, "supplier", supplier_id, [body])
    record_create(session, user, row)
    session.commit()
    return row


@router.patch("/suppliers/{supplier_id}/addresses/{address_id}", response_model=AddressPublic)
def update_supplier_address(
    supplier_id: int, address_id: int, body: AddressUpdate, session: SessionDep, user: PurchasingWriter
):
    return _patch_address(session, user, "supplier", supplier_id, address_id, body)


# ------------------------------------------------------------------------------------------- offers

OfferSort = sort_literal("price", "min_qty", "lead_time_days", "sku", "supplier_code", "id")
_OFFER_SORT = {
    "price": SupplierOffer.price,
    "min_qty": SupplierOffer.min_qty,
    "lead_time_days": SupplierOffer.lead_time_days,
    "sku": Product.sku,
    "supplier_code": Supplier.code,
    "id": SupplierOffer.id,
}


def _offer_public(offer: SupplierOffer, sku: str, supplier_code: str) -> SupplierOfferPublic:
    return SupplierOfferPublic.model_validate(offer, update={"sku": sku, "supplier_code": supplier_code})


def _offer_select():
    return (
        select(SupplierOffer, Product.sku, Supplier.code)
        .join(Product, Product.id == SupplierOffer.product_id)
        .join(Supplier, Supplier.id == SupplierOffer.supplier_id)
    )


def _read_offer(session: Session, offer_id: int) -> SupplierOfferPublic:
    found = session.execute(_offer_select().where(SupplierOffer.id == offer_id)).first()
    if found is None:
        get_or_404(session, SupplierOffer, offer_id, "supplier offer")
    return _offer_public(*found)


@router.get("/supplier-offers", response_model=Page[SupplierOfferPublic])
def list_offers(
    session: SessionDep,
    _: CurrentUser,
    supplier_id: int | None = None,
    product_id: int | None = None,
    q: TextQuery = None,
    sort: OfferSort = "sku",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = _offer_select()
    if supplier_id is not None:
        stmt = stmt.where(SupplierOffer.supplier_id == supplier_id)
    if product_id is not None:
        stmt = stmt.where(SupplierOffer.product_id == product_id)
    if (match := contains(q, Product.sku, Product.name, Supplier.code)) is not None:
        stmt = stmt.where(match)
    rows, total = page_of(session, stmt, sort=sort, columns=_OFFER_SORT, tie=SupplierOffer.id,
                          offset=offset, limit=limit, rows=True)
    return page([_offer_public(*r) for r in rows], total, offset, limit)


@router.get("/supplier-offers/{offer_id}", response_model=SupplierOfferPublic)
def read_offer(offer_id: int, session: SessionDep, _: CurrentUser):
    return _read_offer(session, offer_id)


@router.post("/supplier-offers", response_model=SupplierOfferPublic, status_code=status.HTTP_201_CREATED)
def create_offer(body: SupplierOfferCreate, session: SessionDep, user: PurchasingWriter):
    check_refs(session, {"supplier_id": (Supplier, body.supplier_id), "product_id": (Product, body.product_id)})
    row = SupplierOffer(**body.model_dump())
    session.add(row)
    record_create(session, user, row)
    session.commit()
    return _read_offer(session, row.id)


@router.patch("/supplier-offers/{offer_id}", response_model=SupplierOfferPublic)
def update_offer(offer_id: int, body: SupplierOfferUpdate, session: SessionDep, user: PurchasingWriter):
    row = get_or_404(session, SupplierOffer, offer_id, "supplier offer")
    changed = apply_patch(row, body.model_dump(exclude_unset=True), SupplierOfferCreate)
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return _read_offer(session, row.id)
