"""Documents attached to records: upload (multipart), list by owner, download.

The bytes live in the document row (models/records.py), written in one transaction with their sha256.
Downloads are always served as attachments with nosniff, so an uploaded HTML or SVG file can never run as a
page of this site.
"""

import hashlib
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlmodel import SQLModel

from api.audit import audit
from api.deps import CsrfProtected, CurrentUser, SessionDep
from api.routes.common import Limit, Offset, get_or_404, invalid, page, page_of, sort_literal
from models.masterdata import (
    Customer,
    Location,
    Pricelist,
    Product,
    ProductCategory,
    ReorderRule,
    Supplier,
    SupplierOffer,
    Warehouse,
)
from models.masterdata_api import Page
from models.records import Document
from models.records_api import DocumentPublic

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
_CHUNK = 1024 * 1024

# owner_kind -> table. Other areas register theirs (e.g. OWNER_KINDS["sales_order"] = SalesOrder) at import.
OWNER_KINDS: dict[str, type[SQLModel]] = {
    "product": Product,
    "product_category": ProductCategory,
    "customer": Customer,
    "supplier": Supplier,
    "supplier_offer": SupplierOffer,
    "warehouse": Warehouse,
    "location": Location,
    "pricelist": Pricelist,
    "reorder_rule": ReorderRule,
}

router = APIRouter(tags=["documents"], dependencies=[CsrfProtected])

DocumentSort = sort_literal("uploaded_at", "filename", "size", "id")
_DOCUMENT_SORT = {
    "uploaded_at": Document.uploaded_at,
    "filename": Document.filename,
    "size": Document.size,
    "id": Document.id,
}


def _too_large() -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"file too large: at most {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB",
    )


def _clean_filename(name: str | None) -> str:
    # Keep only the last path part, whichever OS the browser sent it from.
    base = PureWindowsPath(PurePosixPath(name or "").name).name.strip().replace("\x00", "")
    return (base or "upload")[:255]


@router.post("/documents", response_model=DocumentPublic, status_code=status.HTTP_201_CREATED)
async def upload_document(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    owner_kind: Annotated[str, Form(max_length=40)],
    owner_id: Annotated[int, Form()],
    file: Annotated[UploadFile, File()],
) -> Document:
    """Attach a file (at most 10 MB) to a record. The owner must exist."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES + 64 * 1024:
        raise _too_large()
    model = OWNER_KINDS.get(owner_kind)
    if model is None:
        raise invalid("owner_kind", f"unknown owner kind; one of {', '.join(sorted(OWNER_KINDS))}", value=owner_kind)
    digest, chunks, size = hashlib.sha256(), [], 0
    while chunk := await file.read(_CHUNK):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise _too_large()
        digest.update(chunk)
        chunks.append(chunk)
    # The database work is blocking: keep it off the event loop.
    def store() -> Document:
        if session.get(model, owner_id) is None:
            raise invalid("owner_id", f"no {owner_kind.replace('_', ' ')} with id {owner_id}", value=owner_id)
        row = Document(
            owner_kind=owner_kind,
            owner_id=owner_id,
            filename=_clean_filename(file.filename),
            content_type=(file.content_type or "application/octet-stream")[:100],
            size=size,
            sha256=digest.hexdigest(),
            content=b"".join(chunks),
            uploaded_by=user.username,
        )
        session.add(row)
        session.flush()
        audit(session, actor=user.username, action="create", entity_kind="document", entity_id=row.id,
              data={"owner_kind": owner_kind, "owner_id": owner_id, "filename": row.filename, "size": size,
                    "sha256": row.sha256})
        session.commit()
        return row

    return await run_in_threadpool(store)


@router.get("/documents", response_model=Page[DocumentPublic])
def list_documents(
    session: SessionDep,
    _: CurrentUser,
    owner_kind: Annotated[str | None, Query(max_length=40)] = None,
    owner_id: int | None = None,
    sort: DocumentSort = "-uploaded_at",
    offset: Offset = 0,
    limit: Limit = 50,
):
    # Listing selects every column but the bytes.
    columns = [c for c in Document.__table__.c if c.name != "content"]
    stmt = select(*columns)
    if owner_kind is not None:
        stmt = stmt.where(Document.owner_kind == owner_kind)
    if owner_id is not None:
        stmt = stmt.where(Document.owner_id == owner_id)
    rows, total = page_of(session, stmt, sort=sort, columns=_DOCUMENT_SORT, tie=Document.id,
                          offset=offset, limit=limit, rows=True)
    return page([dict(r._mapping) for r in rows], total, offset, limit)


@router.get(
    "/documents/{document_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file, as an attachment"}},
)
def download_document(document_id: int, session: SessionDep, _: CurrentUser) -> Response:
    row = get_or_404(session, Document, document_id, "document")
    return Response(
        content=row.content,
        media_type=row.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "ETag": f'"{row.sha256}"',
            "X-Checksum-SHA256": row.sha256,
        },
    )
