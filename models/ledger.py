"""Double-entry journal. An entry that does not balance cannot be saved, whichever code path tries."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint
from sqlmodel import Field, SQLModel

from models.common import MONEY, utcnow


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entry"
    id: int | None = Field(default=None, primary_key=True)
    # Natural key of what caused the entry (a move, an invoice, an opening balance): a retried posting finds it.
    source_key: str = Field(max_length=120, unique=True)
    date: date
    journal: str = Field(default="general", max_length=20, index=True)  # stock, sales, purchase, bank, general
    memo: str = Field(default="", max_length=300)
    created_at: datetime = Field(default_factory=utcnow)


class JournalLine(SQLModel, table=True):
    __tablename__ = "journal_line"
    __table_args__ = (
        CheckConstraint("debit >= 0 AND credit >= 0", name="journal_line_nonneg"),
        CheckConstraint("(debit = 0) <> (credit = 0)", name="journal_line_one_side"),
    )
    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="journal_entry.id", index=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    debit: Decimal = Field(default=Decimal(0), **MONEY)
    credit: Decimal = Field(default=Decimal(0), **MONEY)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    supplier_id: int | None = Field(default=None, foreign_key="supplier.id", index=True)
    label: str = Field(default="", max_length=200)
