"""Exception handlers: bad input is a 4xx with a clear message, never a 500.

Routes check references and business rules themselves (422 naming the field); these handlers are the backstop
for what only the database can decide (a duplicate key raced in by another request) and for known business
exceptions raised by the data layer.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from sqlalchemy.exc import DataError, IntegrityError

from models.accounting import UnbalancedEntry
from models.inventory import StockError

log = logging.getLogger("tradeflow.api")

# SQLite: "UNIQUE constraint failed: product.sku"; PostgreSQL: 'Key (sku)=(A-1) already exists.'
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")
_PG_UNIQUE = re.compile(r"Key \(([^)]*)\)=\(([^)]*)\) already exists")


def describe_integrity_error(exc: IntegrityError) -> tuple[int, str]:
    """(status, message) for a constraint violation: a duplicate is a 409 conflict, anything else bad input."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    if m := _SQLITE_UNIQUE.search(text):
        columns = ", ".join(c.rsplit(".", 1)[-1] for c in m.group(1).split(", "))
        return status.HTTP_409_CONFLICT, f"duplicate value: a record with this {columns} already exists"
    if m := _PG_UNIQUE.search(text):
        return status.HTTP_409_CONFLICT, f"duplicate value: a record with {m.group(1)} = {m.group(2)} already exists"
    if "unique" in text.lower() or "duplicate" in text.lower():
        return status.HTTP_409_CONFLICT, "duplicate value: such a record already exists"
    if "foreign key" in text.lower():
        return status.HTTP_422_UNPROCESSABLE_CONTENT, "a referenced record does not exist (or is still in use)"
    if "check constraint" in text.lower() or "violates check" in text.lower():
        name = re.search(r"(?:CHECK constraint failed: |check constraint \")(\w+)", text)
        rule = name.group(1) if name else "a rule"
        return status.HTTP_422_UNPROCESSABLE_CONTENT, f"the values break the rule {rule}"
    if "not null" in text.lower():
        return status.HTTP_422_UNPROCESSABLE_CONTENT, "a required value is missing"
    return status.HTTP_409_CONFLICT, "the change conflicts with the stored data"


async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
    code, message = describe_integrity_error(exc)
    return JSONResponse({"detail": message}, status_code=code)


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    # PostgreSQL: numeric overflow, a string too long for its column, ...
    return JSONResponse({"detail": "a value does not fit its field (too long or too large)"}, status_code=422)


async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
    # SQLite cannot bind an integer beyond 64 bits (an id of 10**20 in a path or body).
    return JSONResponse({"detail": "a number is out of range"}, status_code=422)


async def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A 500 is a bug: log it whole, answer without internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # A person who follows a wrong link gets a page in the layout with a way back, not a JSON body;
    # API clients (and anything not asking for HTML) keep FastAPI's JSON answer.
    if exc.status_code == status.HTTP_404_NOT_FOUND and _wants_html(request):
        from ui import TEMPLATES

        return TEMPLATES.TemplateResponse(
            request, "pages/not_found.html",
            {"what": "page", "ident": request.url.path, "back": "/", "back_label": "Go to the start page",
             "title": "Not found"},
            status_code=status.HTTP_404_NOT_FOUND,
        )
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OverflowError, _overflow)
    app.add_exception_handler(UnbalancedEntry, _unprocessable)
    app.add_exception_handler(StockError, _conflict)
    app.add_exception_handler(Exception, _unexpected)
