"""Cross-cutting records: documents attached to any row, and the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from models.common import utcnow


class Document(SQLModel, table=True):
    """A file attached to any record (`owner_kind`, `owner_id`). The bytes live in the row, so an attachment
    is written in the same transaction as the record and can never be half-stored; sha256 proves integrity."""

    __tablename__ = "document"
    __table_args__ = (Index("ix_document_owner", "owner_kind", "owner_id"),)
    id: int | None = Field(default=None, primary_key=True)
    owner_kind: str = Field(max_length=40)
    owner_id: int
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64, index=True)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    uploaded_by: str = Field(max_length=60)
    uploaded_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity_kind", "entity_id"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=60, index=True)
    acting_for: str | None = Field(default=None, max_length=60)
    action: str = Field(max_length=60)
    entity_kind: str = Field(max_length=40)
    entity_id: str = Field(max_length=200)
    reason: str = Field(default="", max_length=500)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
