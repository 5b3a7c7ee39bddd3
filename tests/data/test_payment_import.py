"""Bank statement import (models.csv_import.import_payments) on SQLite and PostgreSQL: a good file records every
payment as finance's form would (allocation, postings, the orders to tell), a re-import skips what was recorded,
a file with any bad row records nothing and names every problem, and two imports of one statement at once record
each payment once.

Figures from tests/sales_world.py: C-1000's order invoiced as INV-000001 535.50 (lamps) and INV-000002 107.10
(cables); C-3000 has an order on credit hold.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.accounting import account_balance, trial_balance
from models.csv_import import ImportFailed, PaymentLineStatus, RowError, import_payments
from models.ledger import JournalEntry
from models.records import AuditEvent
from models.sales import CustomerInvoice, CustomerPayment, SalesOrder
from tests.sales_world import CABLE, LAMP, TIGHT_CUSTOMER, build_sales_world_in
from workflows.contracts import OrderStatus, QuoteLineInput

TODAY = date(2025, 3, 3)
HEADER = "reference,customer_code,amount,payment_date,invoice_number\n"


def run(engine, fn, *args, **kw):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return fn(s, *args, **kw)


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model))


def balances(engine, *codes) -> dict[str, D]:
    with Session(engine) as s:
        return {code: account_balance(s, code) for code in codes}


def quote(engine, customer: str, *lines: tuple[str, str]) -> str:
    draft = orders.QuoteDraft(customer_code=customer, lines=tuple(QuoteLineInput(sku, D(q)) for sku, q in lines))
    return run(engine, orders.create_quote, draft, rep="sam.sales", today=TODAY).number


@pytest.fixture
def books(any_engine) -> tuple:
    """(engine, invoiced order of C-1000, order of C-3000 on credit hold)."""
    engine = any_engine
    build_sales_world_in(engine)
    number = quote(engine, "C-1000", (CABLE, "10"), (LAMP, "10"))
    for status in (OrderStatus.sent, OrderStatus.confirmed):
        run(engine, orders.set_status, number, status, actor="sam.sales")
    run(engine, orders.invoice_order, number, f"{number}/inv/1", today=TODAY)  # INV-000001 535.50
    run(engine, orders.reserve_order, number)
    run(engine, orders.create_shipment, number, 1, today=TODAY)
    for step in ("picked", "packed", "shipped"):
        run(engine, orders.record_shipment_step, f"SHP-{number}-1", step, actor="walter.warehouse")
    run(engine, orders.invoice_order, number, f"{number}/inv/2", today=TODAY + timedelta(days=1))  # 107.10
    held = quote(engine, TIGHT_CUSTOMER, (CABLE, "90"))
    for status in (OrderStatus.sent, OrderStatus.credit_hold):
        run(engine, orders.set_status, held, status, actor="system")
    return engine, number, held


GOOD = (HEADER
        + "BANK-1,C-1000,107.10,2025-03-10,INV-000002\n"
        + "BANK-2,C-1000,600.00,2025-03-11,\n"
        + "BANK-3,C-3000,250.00,2025-03-11,\n")


def residuals(engine) -> dict[str, D]:
    with Session(engine) as s:
        return dict(s.execute(select(CustomerInvoice.number, CustomerInvoice.amount_residual)).all())


def test_a_statement_records_every_payment_allocates_and_names_the_orders_to_tell(books):
    engine, number, held = books
    summary = run(engine, import_payments, GOOD.encode(), actor="fiona.finance", filename="march.csv")

    assert (summary.rows, summary.created, summary.skipped, summary.amount_created) == (3, 3, 0, D("957.10"))
    got = [(x.line, x.reference, x.customer_code, x.amount, x.payment_date, x.status, x.invoice_number,
            x.quote_numbers) for x in summary.lines]
    assert got == [
        (2, "BANK-1", "C-1000", D("107.10"), date(2025, 3, 10), PaymentLineStatus.created, "INV-000002", (number,)),
        # 535.50 settles the older invoice, the other 64.50 stays on C-1000's account.
        (3, "BANK-2", "C-1000", D("600.00"), date(2025, 3, 11), PaymentLineStatus.created, "INV-000001", (number,)),
        # C-3000 has no invoice: all on account; its order on credit hold hears of it (it may be released).
        (4, "BANK-3", "C-3000", D("250.00"), date(2025, 3, 11), PaymentLineStatus.created, None, (held,)),
    ]
    assert residuals(engine) == {"INV-000001": D("0.00"), "INV-000002": D("0.00")}
    # Bank 957.10 in; receivable: 642.60 owed − 707.10 paid by C-1000 − 250.00 paid by C-3000.
    assert balances(engine, "1900", "1100") == {"1900": D("957.10"), "1100": D("-314.50")}
    debit, credit = run(engine, trial_balance)
    assert debit == credit
    with Session(engine) as s:
        paid = s.scalar(select(SalesOrder.amount_paid).where(SalesOrder.number == number))
        assert paid == D("642.60")
        payments = s.execute(select(CustomerPayment.reference, CustomerPayment.recorded_by)
                             .order_by(CustomerPayment.reference)).all()
        assert payments == [("BANK-1", "fiona.finance"), ("BANK-2", "fiona.finance"), ("BANK-3", "fiona.finance")]
        event = s.scalars(select(AuditEvent).where(AuditEvent.entity_kind == "payments")).one()
        assert (event.actor, event.action, event.data["created"], event.data["filename"]) == (
            "fiona.finance", "import", 3, "march.csv")


def test_a_statement_imported_again_skips_what_was_recorded(books):
    engine, number, held = books
    run(engine, import_payments, GOOD, actor="fiona.finance")
    entries, payments = count(engine, JournalEntry), count(engine, CustomerPayment)

    again = run(engine, import_payments, GOOD, actor="fiona.finance")
    assert (again.rows, again.created, again.skipped, again.amount_created) == (3, 0, 3, D("0"))
    assert [x.status for x in again.lines] == [PaymentLineStatus.skipped] * 3
    # Skipped lines still name their orders, so importing again tells the processes that were not told.
    assert [x.quote_numbers for x in again.lines] == [(number,), (number,), (held,)]
    assert (count(engine, JournalEntry), count(engine, CustomerPayment)) == (entries, payments)
    assert balances(engine, "1900") == {"1900": D("957.10")}

    # The next statement overlaps this one: the old line is skipped, the new one recorded (semicolons, as a
    # German spreadsheet writes them, and a byte-order mark).
    overlap = ("\ufeffreference;customer_code;amount;payment_date\n"
               "BANK-3;C-3000;250.00;2025-03-11\nBANK-4;C-3000;99.99;2025-03-12\n").encode()
    summary = run(engine, import_payments, overlap, actor="fiona.finance")
    assert [(x.reference, x.status) for x in summary.lines] == [
        ("BANK-3", PaymentLineStatus.skipped), ("BANK-4", PaymentLineStatus.created)]
    assert (summary.created, summary.skipped, summary.amount_created) == (1, 1, D("99.99"))
    assert balances(engine, "1900") == {"1900": D("1057.09")}


def test_a_file_with_bad_rows_records_nothing_and_names_every_problem(books):
    engine, number, held = books
    run(engine, import_payments, HEADER + "BANK-1,C-1000,107.10,2025-03-10,\n", actor="fiona.finance")
    before = {m.__tablename__: count(engine, m) for m in (CustomerPayment, JournalEntry, AuditEvent)}
    before_residuals = residuals(engine)

    bad = (HEADER
           + "BANK-1,C-1000,107.00,2025-03-10,\n"            # 2: recorded before with 107.10
           + "BANK-9,C-9999,10.00,2025-03-10,\n"             # 3
           + 'BANK-10,C-1000,"1,500.00",2025-03-10,\n'       # 4
           + "BANK-11,C-1000,-5.00,2025-03-10,\n"            # 5: outgoing money is no customer payment
           + "BANK-12,C-1000,5.00,10.03.2025,\n"             # 6
           + "BANK-13,C-1000,5.00,2025-02-30,\n"             # 7
           + "BANK-14,C-3000,5.00,2025-03-10,INV-000001\n"   # 8: C-1000's invoice
           + "BANK-15,C-1000,5.00,2025-03-10,INV-999999\n"   # 9
           + "BANK-16,C-1000,5.00,2025-03-10,\n"             # 10: good on its own
           + "BANK-16,C-1000,5.00,2025-03-10,\n"             # 11
           + "BANK-1,C-3000,107.10,2025-03-10,\n"            # 12: C-1000's reference
           + ",C-1000,5.00,2025-03-10,\n"                    # 13
           + "BANK-17,C-1000,5.001,2025-03-10,\n"            # 14
           + "BANK-18,C-1000,5.00\n")                        # 15
    with pytest.raises(ImportFailed) as failed:
        run(engine, import_payments, bad, actor="fiona.finance")
    assert failed.value.errors == sorted([
        RowError(2, "amount", "payment BANK-1 was already recorded with amount 107.10 from C-1000 on 2025-03-10: "
                              "check the reference"),
        RowError(3, "customer_code", "no customer 'C-9999'"),
        RowError(4, "amount", "'1,500.00' is not a number: use a dot as the decimal separator and no thousands "
                              "separator"),
        RowError(5, "amount", "-5.00 must be greater than 0"),
        RowError(6, "payment_date", "'10.03.2025' is not a date: write it as YYYY-MM-DD, e.g. 2026-03-31"),
        RowError(7, "payment_date", "'2025-02-30' is not a calendar date"),
        RowError(8, "invoice_number", "invoice INV-000001 is not an invoice of C-3000"),
        RowError(9, "invoice_number", "no invoice 'INV-999999'"),
        RowError(11, "reference", "duplicate of line 10 (same bank reference)"),
        RowError(12, "customer_code", "payment BANK-1 was already recorded with amount 107.10 from C-1000 on "
                                      "2025-03-10: check the reference"),
        RowError(12, "reference", "duplicate of line 2 (same bank reference)"),
        RowError(13, "reference", "a value is required"),
        RowError(14, "amount", "5.001 has more than 2 decimal places"),
        RowError(15, "-", "expected 5 fields, found 3"),
    ])
    assert {m.__tablename__: count(engine, m) for m in (CustomerPayment, JournalEntry, AuditEvent)} == before
    assert residuals(engine) == before_residuals

    with pytest.raises(ImportFailed) as header:
        run(engine, import_payments, "reference,customer,amount,payment_date\nB-1,C-1000,1.00,2025-03-10\n",
            actor="fiona.finance")
    assert [(e.line, e.column) for e in header.value.errors] == [(1, "customer"), (1, "customer_code")]


def test_two_imports_of_one_statement_at_once_record_each_payment_once(books):
    engine, number, held = books
    barrier = threading.Barrier(2)
    results: list = []

    def importer() -> None:
        barrier.wait()
        try:
            results.append(run(engine, import_payments, GOOD, actor="fiona.finance"))
        except Exception as exc:  # kept for the assertion below, which shows it
            results.append(exc)

    threads = [threading.Thread(target=importer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(not isinstance(r, Exception) for r in results) and len(results) == 2, results
    # One of them recorded the statement; the other waited for the customers' lock, then skipped every line.
    assert sorted((r.created, r.skipped) for r in results) == [(0, 3), (3, 0)]
    assert count(engine, CustomerPayment) == 3
    assert balances(engine, "1900") == {"1900": D("957.10")}


def test_the_sample_statement_imports(engine):
    from pathlib import Path

    from models.csv_import import run_import
    from models.masterdata import Pricelist
    from models.setup import create_base_setup

    samples = Path(__file__).resolve().parents[2] / "docs" / "import-samples"
    with Session(engine) as s, s.begin():
        create_base_setup(s)
        s.add(Pricelist(name="Contractors"))
    run_import(engine, "customers", (samples / "customers.csv").read_bytes(), actor="t")
    summary = run(engine, import_payments, (samples / "payments.csv").read_bytes(), actor="t")
    # The sample customers have no invoices: everything goes on their accounts (docs/csv-import.md shows this answer).
    assert [(x.reference, x.status, x.invoice_number, x.quote_numbers) for x in summary.lines] == [
        ("BANK-2026-03-0001", PaymentLineStatus.created, None, ()),
        ("BANK-2026-03-0002", PaymentLineStatus.created, None, ()),
        ("BANK-2026-03-0003", PaymentLineStatus.created, None, ())]
    assert (summary.created, summary.amount_created) == (3, D("7200.15"))
    assert balances(engine, "1900", "1100") == {"1900": D("7200.15"), "1100": D("-7200.15")}
