"""Warehouses and their locations (read only: the tree is built by setup and demo data), and stock levels."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import CsrfProtected, CurrentUser, SessionDep
from api.routes.common import Limit, Offset, TextQuery, contains, get_or_404, page, page_of, sort_literal
from models.common import LocationUsage
from models.inventory import stock_levels
from models.masterdata import Location, Warehouse
from models.masterdata_api import LocationPublic, Page, StockLevelPublic, WarehousePublic

router = APIRouter(tags=["warehouses"], dependencies=[CsrfProtected])

WarehouseSort = sort_literal("code", "name", "id")
_WAREHOUSE_SORT = {"code": Warehouse.code, "name": Warehouse.name, "id": Warehouse.id}
LocationSort = sort_literal("full_name", "id")
_LOCATION_SORT = {"full_name": Location.full_name, "id": Location.id}


@router.get("/warehouses", response_model=Page[WarehousePublic])
def list_warehouses(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    branch_id: int | None = None,
    sort: WarehouseSort = "code",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Warehouse)
    if (match := contains(q, Warehouse.code, Warehouse.name)) is not None:
        stmt = stmt.where(match)
    if branch_id is not None:
        stmt = stmt.where(Warehouse.branch_id == branch_id)
    rows, total = page_of(session, stmt, sort=sort, columns=_WAREHOUSE_SORT, tie=Warehouse.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/warehouses/{warehouse_id}", response_model=WarehousePublic)
def read_warehouse(warehouse_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Warehouse, warehouse_id, "warehouse")


@router.get("/locations", response_model=Page[LocationPublic])
def list_locations(
    session: SessionDep,
    _: CurrentUser,
    q: Annotated[str | None, Query(max_length=100, description="text in the full name or barcode")] = None,
    warehouse_id: int | None = None,
    usage: LocationUsage | None = None,
    parent_id: int | None = None,
    sort: LocationSort = "full_name",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Location)
    if (match := contains(q, Location.full_name, Location.barcode)) is not None:
        stmt = stmt.where(match)
    if warehouse_id is not None:
        stmt = stmt.where(Location.warehouse_id == warehouse_id)
    if usage is not None:
        stmt = stmt.where(Location.usage == usage)
    if parent_id is not None:
        stmt = stmt.where(Location.parent_id == parent_id)
    rows, total = page_of(session, stmt, sort=sort, columns=_LOCATION_SORT, tie=Location.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/locations/{location_id}", response_model=LocationPublic)
def read_location(location_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Location, location_id, "location")


@router.get("/stock", response_model=Page[StockLevelPublic])
def list_stock(
    session: SessionDep,
    _: CurrentUser,
    product_id: int | None = None,
    warehouse_id: int | None = None,
    sku: Annotated[str | None, Query(max_length=100, description="SKU prefix or text in the product name")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
):
    """On hand, reserved and available per product and warehouse (stock in internal locations), ordered by
    SKU and warehouse code."""
    levels, total = stock_levels(
        session, product_id=product_id, warehouse_id=warehouse_id, sku=sku, offset=offset, limit=limit
    )
    return page([asdict(level) for level in levels], total, offset, limit)
