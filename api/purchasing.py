"""Purchase orders as JSON (/api/v1/purchase-orders): the list with state and supplier filters and paging, and one
order with its lines. Read-only for now: the orders are written by quote to cash (models/purchasing.py).

Buyers (purchasing, purchasing-manager) and the warehouse, which receives them, may read them (admin too)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel

from api.deps import CsrfProtected, SessionDep, require_roles
from models import purchasing
from models.users import User

READERS = ("purchasing", "purchasing-manager", "warehouse")
Reader = Annotated[User, Depends(require_roles(*READERS))]
StateName = Literal[tuple(s.value for s in purchasing.PurchaseOrderState)]  # type: ignore[valid-type]
SortName = Literal[tuple(v for key in purchasing.SORTS for v in (key, f"-{key}"))]  # type: ignore[valid-type]

router = APIRouter(prefix="/api/v1", tags=["purchasing"], dependencies=[CsrfProtected])


class PurchaseOrderSummary(BaseModel):
    number: str
    state: str
    supplier_code: str
    supplier_name: str
    origin: str
    drop_ship: bool
    destination_code: str
    destination_name: str
    expected_date: date
    created_at: datetime
    line_count: int
    amount_total: Decimal


class PurchaseOrderPage(BaseModel):
    items: list[PurchaseOrderSummary]
    total: int
    offset: int
    limit: int
    sort: str


class PurchaseOrderLineOut(BaseModel):
    line_no: int
    sku: str
    product_name: str
    quantity: Decimal
    unit_cost: Decimal
    subtotal: Decimal
    qty_received: Decimal
    demand_key: str
    sales_order_line_no: int | None


class PurchaseOrderOut(PurchaseOrderSummary):
    shipment_number: str | None
    lines: list[PurchaseOrderLineOut]


def summary_of(row: purchasing.PurchaseOrderRow) -> PurchaseOrderSummary:
    return PurchaseOrderSummary.model_validate(row, from_attributes=True)


@router.get("/purchase-orders", response_model=PurchaseOrderPage)
def list_purchase_orders(
    session: SessionDep,
    user: Reader,
    state: StateName | None = None,
    supplier: Annotated[str | None, Query(max_length=20, description="the supplier's code")] = None,
    origin: Annotated[str | None, Query(max_length=60, description="text in the origin, e.g. a sales order")] = None,
    sort: SortName = purchasing.DEFAULT_SORT,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=purchasing.MAX_PAGE)] = 50,
) -> PurchaseOrderPage:
    """Purchase orders, newest first by default, filtered by state, supplier and origin, and paged."""
    rows, total = purchasing.search_purchase_orders(session, state=state, supplier=supplier, origin=origin,
                                                    sort=sort, offset=offset, limit=limit)
    session.commit()
    return PurchaseOrderPage(items=[summary_of(r) for r in rows], total=total, offset=offset, limit=limit, sort=sort)


@router.get("/purchase-orders/{number}", response_model=PurchaseOrderOut,
            responses={404: {"description": "no purchase order with that number"}})
def get_purchase_order(number: str, session: SessionDep, user: Reader) -> PurchaseOrderOut:
    """One purchase order with its lines."""
    detail = purchasing.purchase_order_detail(session, number)
    session.commit()
    if detail is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no purchase order {number[:40]!r}")
    return PurchaseOrderOut(**summary_of(detail.order).model_dump(), shipment_number=detail.shipment_number,
                            lines=[PurchaseOrderLineOut.model_validate(ln, from_attributes=True)
                                   for ln in detail.lines])
