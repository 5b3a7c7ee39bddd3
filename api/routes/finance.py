"""Taxes (finance writes) and the chart of accounts (read only here: it is set up with the company)."""

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
from models.common import AccountType
from models.masterdata import Account, Tax
from models.masterdata_api import AccountPublic, Page, TaxCreate, TaxPublic, TaxUpdate
from models.users import User

FINANCE_WRITERS = ("finance", "cfo")
FinanceWriter = Annotated[User, Depends(require_roles(*FINANCE_WRITERS))]

router = APIRouter(tags=["finance"], dependencies=[CsrfProtected])

TaxSort = sort_literal("name", "rate", "id")
_TAX_SORT = {"name": Tax.name, "rate": Tax.rate, "id": Tax.id}
AccountSort = sort_literal("code", "name", "id")
_ACCOUNT_SORT = {"code": Account.code, "name": Account.name, "id": Account.id}


@router.get("/taxes", response_model=Page[TaxPublic])
def list_taxes(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    sort: TaxSort = "name",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Tax)
    if (match := contains(q, Tax.name)) is not None:
        stmt = stmt.where(match)
    rows, total = page_of(session, stmt, sort=sort, columns=_TAX_SORT, tie=Tax.id, offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/taxes/{tax_id}", response_model=TaxPublic)
def read_tax(tax_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Tax, tax_id, "tax")


@router.post("/taxes", response_model=TaxPublic, status_code=status.HTTP_201_CREATED)
def create_tax(body: TaxCreate, session: SessionDep, user: FinanceWriter):
    check_refs(session, {"account_id": (Account, body.account_id)})
    row = Tax(**body.model_dump())
    return insert_row(session, user, row)


@router.patch("/taxes/{tax_id}", response_model=TaxPublic)
def update_tax(tax_id: int, body: TaxUpdate, session: SessionDep, user: FinanceWriter):
    row = get_or_404(session, Tax, tax_id, "tax")
    return patch_row(session, user, row, body, TaxCreate,
                          lambda merged: check_refs(session, {"account_id": (Account, merged.get("account_id"))}))


@router.get("/accounts", response_model=Page[AccountPublic])
def list_accounts(
    session: SessionDep,
    _: CurrentUser,
    q: TextQuery = None,
    type: AccountType | None = None,
    sort: AccountSort = "code",
    offset: Offset = 0,
    limit: Limit = 50,
):
    stmt = select(Account)
    if (match := contains(q, Account.code, Account.name)) is not None:
        stmt = stmt.where(match)
    if type is not None:
        stmt = stmt.where(Account.type == type)
    rows, total = page_of(session, stmt, sort=sort, columns=_ACCOUNT_SORT, tie=Account.id,
                          offset=offset, limit=limit)
    return page(rows, total, offset, limit)


@router.get("/accounts/{account_id}", response_model=AccountPublic)
def read_account(account_id: int, session: SessionDep, _: CurrentUser):
    return get_or_404(session, Account, account_id, "account")
