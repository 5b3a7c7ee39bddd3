"""Reorder rules (Odoo orderpoints, erp-anchors b1): min, max, multiple and lead time per product and warehouse."""

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from api.deps import CsrfProtected, CurrentUser, SessionDep, require_roles
from api.routes.common import (
    Limit,
    Offset,
    TextQuery,
    check_refs,
    contains,
    get_or_404,
    insert_row,
    page,
    page_of,
    patch_row,
    sort_literal,
)
from models.masterdata import Product, ReorderRule, Supplier, Warehouse
from models.masterdata_api import Page, ReorderRuleCreate, ReorderRulePublic, ReorderRuleUpdate
from models.users import User

PLANNING_WRITERS = ("purchasing", "purchasing-manager")
PlanningWriter = Annotated[User, Depends(require_roles(*PLANNING_WRITERS))]

router = APIRouter(tags=["planning"], dependencies=[CsrfProtected])

ReorderSort = sort_literal("sku", "min_qty", "max_qty", "lead_days", "id")
_REORDER_SORT = {
    "sku": Product.sku,
    "min_qty": ReorderRule.min_qty,
    "max_qty": ReorderRule.max_qty,
    "lead_days": ReorderRule.lead_days,
    "id": ReorderRule.id,
}


def _refs(values: dict) -> dict:
    return {
        "product_id": (Product, values.get("product_id")),
        "warehouse_id": (Warehouse, values.get("warehouse_id")),
        "supplier_id": (Supplier, values.get("supplier_id")),
    }


@router.get("/reorder-rules", response_model=Page[ReorderRulePublic])
def list_reorder_rules(
    session: SessionDep,
    _: CurrentUser,
    product_id: int | None = None,
    warehouse_id: int | None = None,
    supplier_id: int | None = None,
    q: TextQuery = None,
    sort: ReorderSort = "sku",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(ReorderRule).join(Product, Product.id == ReorderRule.product_id)
    if product_id is not None:
        stmt = stmt.where(ReorderRule.product_id == product_id)
    if warehouse_id is not None:
        stmt = stmt.where(ReorderRule.warehouse_id == warehouse_id)
    if supplier_id is not None:
        stmt = stmt.where(ReorderRule.supplier_id == supplier_id)
    if (match := contains(q, Product.sku, Product.name)) is not None:
        stmt = stmt.where(match)
    rows, total = page_of(session, stmt, sort=sort, columns=_REORDER_SORT, tie=ReorderRule.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/reorder-rules/{rule_id}", response_model=ReorderRulePublic)
def read_reorder_rule(rule_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, ReorderRule, rule_id, "reorder rule")


@router.post("/reorder-rules", response_model=ReorderRulePublic, status_code=status.HTTP_201_CREATED)
def create_reorder_rule(body: ReorderRuleCreate, session: SessionDep, user: PlanningWriter):
    check_refs(session, _refs(body.model_dump()))
    row = ReorderRule(**body.model_dump())
    return insert_row(session, user, row)


@router.patch("/reorder-rules/{rule_id}", response_model=ReorderRulePublic)
def update_reorder_rule(rule_id: int, body: ReorderRuleUpdate, session: SessionDep, user: PlanningWriter):
    row = get_or_404(session, ReorderRule, rule_id, "reorder rule")
    return patch_row(session, user, row, body, ReorderRuleCreate,
                          lambda merged: check_refs(session, _refs(merged)))
