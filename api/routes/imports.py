"""CSV import: POST /api/v1/imports/{kind} with a multipart `file` (column spec: docs/csv-import.md).

200 {kind, rows, created, updated} when every row is good (all written in one transaction), or 422
{errors: [{line, column, reason}, ...]} listing every problem, with nothing written.

POST /api/v1/imports/payments takes a bank statement (finance): the same all-or-nothing checks, an answer per line
(created, or skipped when that reference and amount were recorded before), and after the commit each order the
payments concern is told (payment_received, api.quotes.tell_payments, the single payment's own code); an order
that could not be told is listed, and the payments stay recorded (import the file again to tell it again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.audit import audit
from api.deps import CsrfProtected, CurrentUser, SessionDep, SettingsDep, current_roles, has_role
from api.health import get_temporal_client
from models.csv_import import (
    PAYMENTS,
    ImportFailed,
    ImportKind,
    PaymentImportSummary,
    import_csv,
    import_payments,
    iter_errors,
)
from models.records_api import ImportErrors, ImportResult
from models.users import User
from workflows.contracts import PaymentNotice

ClientSource = Callable[[], Awaitable[Any]]  # api.quotes.ClientSource: yields the Temporal client or raises a 503

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


PAYMENT_IMPORT_ROLES = ("finance",)


class PaymentLineOut(BaseModel):
    line: int = Field(description="line number in the file, the header being line 1")
    reference: str
    customer_code: str
    amount: Decimal
    payment_date: date
    status: str = Field(description="created, or skipped: this reference and amount were recorded before")
    invoice_number: str | None = Field(description="the first invoice the payment settles; null: on account")
    orders: list[str] = Field(description="quote numbers whose processes the payment concerns")


class NotToldOut(BaseModel):
    quote_number: str
    reason: str


class PaymentImportOut(BaseModel):
    kind: str = PAYMENTS
    rows: int
    created: int
    skipped: int
    amount_created: Decimal = Field(description="the sum of the payments this file added")
    lines: list[PaymentLineOut]
    notified: list[str] = Field(description="quote numbers whose processes were told of the payments")
    not_notified: list[NotToldOut] = Field(
        description="processes that could not be told; the payments are recorded (import the file again to retry)")


@dataclass(frozen=True)
class PaymentImportOutcome:
    summary: PaymentImportSummary
    notified: list[str]
    not_notified: list[tuple[str, str]]

    def out(self) -> PaymentImportOut:
        s = self.summary
        return PaymentImportOut(
            rows=s.rows, created=s.created, skipped=s.skipped, amount_created=s.amount_created,
            lines=[PaymentLineOut(line=x.line, reference=x.reference, customer_code=x.customer_code, amount=x.amount,
                                  payment_date=x.payment_date, status=x.status.value,
                                  invoice_number=x.invoice_number, orders=list(x.quote_numbers)) for x in s.lines],
            notified=self.notified,
            not_notified=[NotToldOut(quote_number=n, reason=r) for n, r in self.not_notified])


async def import_payment_file(session: Session, client_source: ClientSource, username: str, data: bytes,
                              filename: str) -> PaymentImportOutcome | ImportFailed:
    """Import a bank statement (one transaction, committed before any process is asked: on SQLite it holds the
    write lock the workflows' activities need), then tell the orders. The API and the payment page both call it."""
    def run() -> PaymentImportSummary | ImportFailed:
        for attempt in (1, 2):
            try:
                summary = import_payments(session, data, actor=username, filename=filename)
                session.commit()
                return summary
            except ImportFailed as failed:
                session.rollback()
                audit(session, actor=username, action="import_failed", entity_kind=PAYMENTS, entity_id="-",
                      reason=f"{len(failed.errors)} error(s)", data={"filename": filename[:200]})
                session.commit()
                return failed
            except IntegrityError:
                # A payment of the same reference for another customer was committed between our check and our
                # write (only the reference's unique index saw it): once more, and the check names the row.
                session.rollback()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # Imported here: api.quotes reaches api.inbox, which imports this package (api.routes.common) while loading.
    from api.quotes import tell_payments

    outcome = await run_in_threadpool(run)
    if isinstance(outcome, ImportFailed):
        return outcome
    notices = [(number, PaymentNotice(payment_reference=x.reference, customer_id=x.customer_id, amount=x.amount))
               for x in outcome.lines for number in x.quote_numbers]
    notified, problems = await tell_payments(client_source, notices)
    return PaymentImportOutcome(outcome, notified, problems)


def payment_importer(request: Request, user: CurrentUser) -> User:
    if not has_role(current_roles(request), *PAYMENT_IMPORT_ROLES):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail="forbidden: importing payments needs one of the roles admin, finance")
    return user


async def read_upload(file: UploadFile) -> bytes:
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                            detail=f"file too large: at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    return data


# Declared before /imports/{kind}, which would otherwise take "payments" as a kind it does not know.
@router.post(
    "/imports/payments",
    response_model=PaymentImportOut,
    responses={422: {"model": ImportErrors, "description": "the rows in error; nothing was imported"}},
)
async def import_payments_file(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: Annotated[User, Depends(payment_importer)],
    file: Annotated[UploadFile, File(description="the bank statement as CSV, UTF-8")],
):
    """Record the payments of a bank statement (idempotent by bank reference) and tell the orders they concern."""
    data = await read_upload(file)
    outcome = await import_payment_file(session, lambda: get_temporal_client(request, settings), user.username,
                                        data, file.filename or "")
    if isinstance(outcome, ImportFailed):
        return JSONResponse({"errors": list(iter_errors(outcome))}, status_code=422)
    return outcome.out()


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
    data = await read_upload(file)
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
