"""CSV import: POST /api/v1/imports/{kind} with a multipart `file` (column spec: docs/csv-import.md).

200 {kind, rows, created, updated} when every row is good (all written in one transaction), or 422
{errors: [{line, column, reason}, ...]} listing every problem, with nothing written.
"""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.audit import audit
from api.deps import CsrfProtected, CurrentUser, SessionDep, current_roles, has_role
from models.csv_import import ImportFailed, ImportKind, import_csv, iter_errors
from models.records_api import ImportErrors, ImportResult
from models.users import User

MAX_IMPORT_BYTES = 20 * 1024 * 1024

# Who may import what (admin may import everything). Opening stock and balances post to the journal.
IMPORT_ROLES: dict[ImportKind, tuple[str, ...]] = {
    ImportKind.products: ("purchasing", "purchasing-manager"),
    ImportKind.customers: ("sales-manager", "credit-controller"),
    ImportKind.suppliers: ("purchasing", "purchasing-manager"),
    ImportKind.offers: ("purchasing", "purchasing-manager"),
    ImportKind.stock: ("finance", "cfo"),
    ImportKind.balances: ("finance", "cfo"),
}

router = APIRouter(tags=["imports"], dependencies=[CsrfProtected])


def importer(kind: ImportKind, request: Request, user: CurrentUser) -> User:
    allowed = IMPORT_ROLES[kind]
    if not has_role(current_roles(request), *allowed):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"forbidden: importing {kind.value} needs one of the roles {', '.join(sorted({*allowed, 'admin'}))}",
        )
    return user


@router.post(
    "/imports/{kind}",
    response_model=ImportResult,
    responses={422: {"model": ImportErrors, "description": "the rows in error; nothing was imported"}},
)
async def import_file(
    kind: ImportKind,
    request: Request,
    session: SessionDep,
    user: Annotated[User, Depends(importer)],
    file: Annotated[UploadFile, File(description="the CSV file, UTF-8")],
    entry_date: Annotated[date | None, Query(description="date of the opening journal entry (stock, balances)")] = None,
):
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                            detail=f"file too large: at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    may_set_credit_limit = has_role(current_roles(request), "credit-controller", "cfo")
    filename = file.filename or ""

    def run():
        try:
            summary = import_csv(session, kind, data, actor=user.username, entry_date=entry_date,
                                 may_set_credit_limit=may_set_credit_limit, filename=filename)
        except ImportFailed as failed:
            session.rollback()
            audit(session, actor=user.username, action="import_failed", entity_kind=kind.value, entity_id="-",
                  reason=f"{len(failed.errors)} error(s)", data={"filename": filename[:200]})
            session.commit()
            return failed
        session.commit()
        return summary

    outcome = await run_in_threadpool(run)
    if isinstance(outcome, ImportFailed):
        return JSONResponse({"errors": list(iter_errors(outcome))}, status_code=422)
    return ImportResult(kind=outcome.kind, rows=outcome.rows, created=outcome.created, updated=outcome.updated)
