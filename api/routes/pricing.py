"""Pricelists and their rules (Odoo-style, erp-anchors b7). Sales managers set prices; everyone reads them."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
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
from models.masterdata import Pricelist, PricelistRule, Product, ProductCategory
from models.masterdata_api import (
    Page,
    PricelistCreate,
    PricelistPublic,
    PricelistRuleCreate,
    PricelistRulePublic,
    PricelistRuleUpdate,
    PricelistUpdate,
)
from models.users import User

PRICING_WRITERS = ("sales-manager",)
PricingWriter = Annotated[User, Depends(require_roles(*PRICING_WRITERS))]

router = APIRouter(tags=["pricing"], dependencies=[CsrfProtected])

PricelistSort = sort_literal("name", "id")
_PRICELIST_SORT = {"name": Pricelist.name, "id": Pricelist.id}
RuleSort = sort_literal("min_quantity", "id")
_RULE_SORT = {"min_quantity": PricelistRule.min_quantity, "id": PricelistRule.id}


def _rule_refs(values: dict) -> dict:
    return {
        "product_id": (Product, values.get("product_id")),
        "category_id": (ProductCategory, values.get("category_id")),
    }


@router.get("/pricelists", response_model=Page[PricelistPublic])
def list_pricelists(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    sort: PricelistSort = "name",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Pricelist)
    if (match := contains(q, Pricelist.name)) is not None:
        stmt = stmt.where(match)
    rows, total = page_of(session, stmt, sort=sort, columns=_PRICELIST_SORT, tie=Pricelist.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/pricelists/{pricelist_id}", response_model=PricelistPublic)
def read_pricelist(pricelist_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Pricelist, pricelist_id, "pricelist")


@router.post("/pricelists", response_model=PricelistPublic, status_code=status.HTTP_201_CREATED)
def create_pricelist(body: PricelistCreate, session: SessionDep, user: PricingWriter):
    row = Pricelist(**body.model_dump())
    return insert_row(session, user, row)


@router.patch("/pricelists/{pricelist_id}", response_model=PricelistPublic)
def update_pricelist(pricelist_id: int, body: PricelistUpdate, session: SessionDep, user: PricingWriter):
    row = get_or_404(session, Pricelist, pricelist_id, "pricelist")
    return patch_row(session, user, row, body, PricelistCreate)


@router.get("/pricelists/{pricelist_id}/rules", response_model=Page[PricelistRulePublic])
def list_rules(
    pricelist_id: int,
    session: SessionDep,
    _: CurrentUser,
    product_id: int | None = None,
    category_id: int | None = None,
    sort: RuleSort = "id",
    offset: Offset = 0,
    limit: Limit = 50,
):
    get_or_404(session, Pricelist, pricelist_id, "pricelist")
    stmt = select(PricelistRule).where(PricelistRule.pricelist_id == pricelist_id)
    if product_id is not None:
        stmt = stmt.where(PricelistRule.product_id == product_id)
    if category_id is not None:
        stmt = stmt.where(PricelistRule.category_id == category_id)
    rows, total = page_of(session, stmt, sort=sort, columns=_RULE_SORT, tie=PricelistRule.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


def _rule_of(session, pricelist_id: int, rule_id: int) -> PricelistRule:
    rule = session.get(PricelistRule, rule_id)
    if rule is None or rule.pricelist_id != pricelist_id:
        raise HTTPException(status_code=404, detail=f"rule {rule_id} of pricelist {pricelist_id} not found")
    return rule


@router.get("/pricelists/{pricelist_id}/rules/{rule_id}", response_model=PricelistRulePublic)
def read_rule(pricelist_id: int, rule_id: int, session: SessionDep, _: CurrentUser):
    return _rule_of(session, pricelist_id, rule_id)


@router.post("/pricelists/{pricelist_id}/rules", response_model=PricelistRulePublic,
             status_code=status.HTTP_201_CREATED)
def create_rule(pricelist_id: int, body: PricelistRuleCreate, session: SessionDep, user: PricingWriter):
    get_or_404(session, Pricelist, pricelist_id, "pricelist")
    check_refs(session, _rule_refs(body.model_dump()))
    row = PricelistRule(**body.model_dump(), pricelist_id=pricelist_id)
    return insert_row(session, user, row)


@router.patch("/pricelists/{pricelist_id}/rules/{rule_id}", response_model=PricelistRulePublic)
def update_rule(pricelist_id: int, rule_id: int, body: PricelistRuleUpdate, session: SessionDep, user: PricingWriter):
    row = _rule_of(session, pricelist_id, rule_id)
    return patch_row(session, user, row, body, PricelistRuleCreate,
                          lambda merged: check_refs(session, _rule_refs(merged)))
