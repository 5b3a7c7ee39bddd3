"""Posting to the double-entry journal.

`post_entry` is the one way code posts; the flush guard below also refuses an unbalanced entry written any other
way, so "an entry that does not balance cannot be saved" holds for every path through the ORM.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import event, func, select
from sqlmodel import Session

from models.common import ZERO, money, utcnow
from models.db import insert_if_absent
from models.ledger import JournalEntry, JournalLine
from models.masterdata import Account


class UnbalancedEntry(ValueError):
    """Debits and credits of a journal entry differ."""


@dataclass(frozen=True)
class LineSpec:
    account_code: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    label: str = ""
    customer_id: int | None = None
    supplier_id: int | None = None


def known_account_ids(session: Session) -> dict[str, int]:
    """Account code -> id as this session (one transaction) has read them: a shipment's moves and its cost entry
    post to the same few accounts, and each was read once. Kept in `session.info`, so it ends with the session and
    never outlives a change of the chart."""
    return session.info.setdefault("tradeflow.account_ids", {})


def account_id(session: Session, code: str) -> int:
    found = session.scalar(select(Account.id).where(Account.code == code))
    if found is None:
        raise LookupError(f"no account with code {code!r} in the chart of accounts")
    return found


def post_entry(
    session: Session,
    *,
    source_key: str,
    entry_date: date,
    lines: list[LineSpec],
    journal: str = "general",
    memo: str = "",
) -> JournalEntry:
    """Post a balanced entry once per `source_key` (a retry returns the entry already posted).

    The entry is checked (balance, accounts) before anything is written, then claimed by its key in one statement
    (INSERT ... ON CONFLICT DO NOTHING): a first posting costs no read for the key, and a retry reads the entry
    already posted. A new entry comes back as a transient JournalEntry carrying its id (callers keep the id)."""
    cleaned = [l for l in lines if money(l.debit) != ZERO or money(l.credit) != ZERO]
    if len(cleaned) < 2:
        raise UnbalancedEntry(f"entry {source_key}: needs at least two non-zero lines")
    for l in cleaned:
        if l.debit < 0 or l.credit < 0 or (money(l.debit) != ZERO and money(l.credit) != ZERO):
            raise UnbalancedEntry(f"entry {source_key}: a line is either a positive debit or a positive credit")
    debit = sum((money(l.debit) for l in cleaned), ZERO)
    credit = sum((money(l.credit) for l in cleaned), ZERO)
    if debit != credit:
        raise UnbalancedEntry(f"entry {source_key}: debits {debit} differ from credits {credit}")
    # Every account resolved before anything is written: those this session has met already (known_account_ids),
    # the rest in one query (an invoice names up to five).
    ids = known_account_ids(session)
    missing = {l.account_code for l in cleaned} - ids.keys()
    if missing:
        ids.update(session.execute(select(Account.code, Account.id).where(Account.code.in_(missing))).all())
    for l in cleaned:
        if l.account_code not in ids:
            raise LookupError(f"no account with code {l.account_code!r} in the chart of accounts")
    values = {"source_key": source_key, "date": entry_date, "journal": journal, "memo": memo, "created_at": utcnow()}
    claimed = insert_if_absent(session, JournalEntry.__table__, values, "source_key")
    if claimed is None:
        return session.scalars(select(JournalEntry).where(JournalEntry.source_key == source_key)).one()
    entry = JournalEntry(id=claimed, **values)
    # The lines go in as one Core executemany: this entry was checked to balance above and has no stored lines,
    # so the flush guard's per-entry re-read (and an INSERT per line) would only cost statements. The guard still
    # covers every other way of writing lines through the ORM.
    session.execute(
        JournalLine.__table__.insert(),
        [
            {
                "entry_id": entry.id,
                "account_id": ids[l.account_code],
                "debit": money(l.debit),
                "credit": money(l.credit),
                "label": l.label,
                "customer_id": l.customer_id,
                "supplier_id": l.supplier_id,
            }
            for l in cleaned
        ],
    )
    return entry


def account_balance(session: Session, code: str) -> Decimal:
    """Debit minus credit over every posted line of the account."""
    row = session.execute(
        select(func.coalesce(func.sum(JournalLine.debit), 0), func.coalesce(func.sum(JournalLine.credit), 0))
        .join(Account, Account.id == JournalLine.account_id)
        .where(Account.code == code)
    ).one()
    return money(row[0]) - money(row[1])


def trial_balance(session: Session) -> tuple[Decimal, Decimal]:
    """Total debits and credits of the whole journal: equal whenever the books are sound."""
    row = session.execute(
        select(func.coalesce(func.sum(JournalLine.debit), 0), func.coalesce(func.sum(JournalLine.credit), 0))
    ).one()
    return money(row[0]), money(row[1])


@event.listens_for(Session, "before_flush")
def _refuse_unbalanced_entries(session, _flush_context, _instances):
    touched: set[int] = set()
    pending: dict[object, list[JournalLine]] = defaultdict(list)
    for obj in list(session.new) + list(session.dirty) + list(session.deleted):
        if isinstance(obj, JournalLine):
            if obj.entry_id is not None:
                touched.add(obj.entry_id)
            else:
                pending[id(obj)].append(obj)
    if not touched:
        return
    # Sum what the entry will hold after this flush: stored lines not being changed, plus new and dirty ones.
    changing = {id(o) for o in session.new} | {id(o) for o in session.dirty}
    deleted = {o.id for o in session.deleted if isinstance(o, JournalLine)}
    for entry_id in touched:
        totals = [ZERO, ZERO]
        with session.no_autoflush:
            stored = session.execute(
                select(JournalLine.id, JournalLine.debit, JournalLine.credit).where(JournalLine.entry_id == entry_id)
            ).all()
        changed_ids = {o.id for o in session.dirty if isinstance(o, JournalLine)}
        for line_id, d, c in stored:
            if line_id in changed_ids or line_id in deleted:
                continue
            totals[0] += money(d)
            totals[1] += money(c)
        for obj in list(session.new) + list(session.dirty):
            if isinstance(obj, JournalLine) and obj.entry_id == entry_id and id(obj) in changing:
                totals[0] += money(obj.debit)
                totals[1] += money(obj.credit)
        if totals[0] != totals[1]:
            raise UnbalancedEntry(f"journal entry {entry_id} would not balance: debits {totals[0]}, credits {totals[1]}")
