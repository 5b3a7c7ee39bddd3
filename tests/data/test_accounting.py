"""post_entry: one entry per source key, checked before anything is written (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models.accounting import LineSpec, UnbalancedEntry, account_balance, post_entry, trial_balance
from models.ledger import JournalEntry, JournalLine

DAY = date(2026, 3, 2)


def _lines(amount: str) -> list[LineSpec]:
    return [LineSpec("1200", debit=Decimal(amount), label="opening"), LineSpec("3900", credit=Decimal(amount))]


def _counts(engine) -> tuple[int, int]:
    with Session(engine) as s:
        return (s.scalar(select(func.count()).select_from(JournalEntry)),
                s.scalar(select(func.count()).select_from(JournalLine)))


def test_a_second_posting_with_the_same_key_returns_the_first_entry_and_writes_nothing(any_world):
    engine, _world = any_world
    before = _counts(engine)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        first = post_entry(s, source_key="opening:C-9", entry_date=DAY, journal="general", memo="opening",
                           lines=_lines("250.00"))
    with Session(engine, expire_on_commit=False) as s, s.begin():
        again = post_entry(s, source_key="opening:C-9", entry_date=DAY, lines=_lines("250.00"))
    assert first.id is not None and again.id == first.id
    assert (again.source_key, again.journal, again.memo, again.date) == ("opening:C-9", "general", "opening", DAY)
    assert _counts(engine) == (before[0] + 1, before[1] + 2)
    with Session(engine) as s:
        assert account_balance(s, "1200") - account_balance(s, "3900") == Decimal("500.00")
        debit, credit = trial_balance(s)
        assert debit == credit


def test_an_unbalanced_entry_or_an_unknown_account_is_refused_and_nothing_is_written(any_world):
    engine, _world = any_world
    before = _counts(engine)
    with pytest.raises(UnbalancedEntry, match="differ"):
        with Session(engine) as s, s.begin():
            post_entry(s, source_key="bad:1", entry_date=DAY, lines=[LineSpec("1200", debit=Decimal("10")),
                                                                      LineSpec("3900", credit=Decimal("9.99"))])
    with pytest.raises(LookupError, match="9999"):
        with Session(engine) as s, s.begin():
            post_entry(s, source_key="bad:2", entry_date=DAY, lines=[LineSpec("1200", debit=Decimal("10")),
                                                                      LineSpec("9999", credit=Decimal("10"))])
    assert _counts(engine) == before
    # The refused keys stay free: a corrected posting under the same key goes in.
    with Session(engine) as s, s.begin():
        post_entry(s, source_key="bad:1", entry_date=DAY, lines=_lines("10"))
    assert _counts(engine) == (before[0] + 1, before[1] + 2)
