"""API data models for documents and imports (no table=True)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class DocumentPublic(SQLModel):
    """A stored attachment, without its bytes (GET /api/v1/documents/{id} downloads them)."""

    id: int
    owner_kind: str
    owner_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


class ImportResult(SQLModel):
    kind: str
    rows: int = Field(description="data rows in the file")
    created: int
    updated: int


class ImportRowError(SQLModel):
    line: int = Field(description="line number in the file, the header being line 1")
    column: str
    reason: str


class ImportErrors(SQLModel):
    errors: list[ImportRowError]
