"""SQL statements and milliseconds per quote-to-cash activity, for the activities a straight-through order runs.

Drives SalesActivities directly (no Temporal) in the order QuoteToCash's folded path calls them, with the API's part
of the order around them (the quote row before, the payments before the last settlement: rows marked "(API)", what
bench/quote_to_cash.py's driver does), on a fresh SQLite
file (make run's store) or PostgreSQL, and counts what each activity sends to the database with a
`before_cursor_execute` listener. The statement count is exact and machine-independent; the milliseconds are the
activity's own Python + database time (a quiet machine gives steadier figures).

    .venv/bin/python bench/q2c_statements.py                  # SQLite, 20 orders
    .venv/bin/python bench/q2c_statements.py --store postgres --orders 40
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event, select  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.sales import SalesActivities  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.orders import shipment_number  # noqa: E402
from models.sales import SalesOrder  # noqa: E402
from tests.q2c_driver import OrderDriver, OrderLine, straight_through_world  # noqa: E402
from tests.sales_world import CABLE, LAMP  # noqa: E402
from workflows.contracts import (  # noqa: E402
    ConfirmOrderInput,
    CreateShipmentInput,
    OrderNotifyInput,
    QuoteRef,
    RecordShipmentStepInput,
    SetOrderStatusInput,
    SettleOrderInput,
)

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Counter:
    def __init__(self, engine) -> None:
        self.n = 0
        self.trace: list[str] | None = None
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args) -> None:
        self.n += 1
        if self.trace is not None:
            self.trace.append(" ".join(statement.split())[:160])


def one_order(acts: SalesActivities, engine, counter: Counter, lines, stats, trace: bool = False) -> None:
    env = ActivityEnvironment()
    driver = OrderDriver(None, "", engine, "C-1000")  # only its database half: the quote row and the payments

    def timed(name: str, call):
        before, t0 = counter.n, time.perf_counter()
        if trace:
            counter.trace = []
        result = call()
        if trace:
            print(f"--- {name}: {len(counter.trace)} statements")
            print("\n".join(counter.trace))
            counter.trace = None
        stats[name].append((counter.n - before, (time.perf_counter() - t0) * 1000))
        return result

    def run(name: str, fn, arg):
        return timed(name, lambda: env.run(fn, arg))

    # The rep's quote row and finance's payments: what the API does for the order (the bench's driver does it).
    number, _attributes = timed("(API) create_quote", lambda: driver._create_quote(lines))

    ordered = any(ln.sku == LAMP for ln in lines)
    run("load_quote", acts.load_quote, QuoteRef(number))
    run("set_order_status pending", acts.set_order_status, SetOrderStatusInput(number, "pending_approval",
                                                                                "sam.sales", quote=False))
    run("set_order_status sent", acts.set_order_status, SetOrderStatusInput(number, "sent", "system", "approved",
                                                                             quote=False))
    run("accept_order", acts.accept_order, QuoteRef(number))
    run("confirm_order", acts.confirm_order, ConfirmOrderInput(number, "orders@muster.test", "confirmed",
                                                              f"{number}/inv/1" if ordered else None))
    n_inv = 1 if ordered else 0
    run("create_shipment", acts.create_shipment, CreateShipmentInput(number, 1))
    shp = shipment_number(number, 1)
    for step in ("picked", "packed", "shipped"):
        run(f"record_shipment_step {step}", acts.record_shipment_step, RecordShipmentStepInput(shp, step, "walter.warehouse"))
    key = f"{number}/inv/{n_inv + 1}"
    notice = OrderNotifyInput(number, f"{shp}:shipped", "shipment", "...")
    run("settle_order shipped", acts.settle_order, SettleOrderInput(number, (notice,), invoice_key=key, rest_invoice_key=key,
                                                            close=True))
    timed("(API) record_payment per invoice", lambda: driver._pay_invoices(number))
    run("settle_order paid", acts.settle_order, SettleOrderInput(number, rest_invoice_key=f"{number}/inv/{n_inv + 2}",
                                                            close=True))
    with Session(engine) as s:
        status = s.scalars(select(SalesOrder.status).where(SalesOrder.number == number)).one()
        assert status == "done", (number, status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--trace", action="store_true", help="print every statement of the last order")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tradeflow-q2c-stmts-") as tmp:
        pg_name = None
        if args.store == "sqlite":
            url = f"sqlite:///{tmp}/q2c.db"
        else:  # a database of its own, dropped at the end (the server is shared)
            pg_name = f"tradeflow_q2c_stmts_{uuid.uuid4().hex[:10]}"
            with sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{pg_name}"'))
            url = PG_URL.rsplit("/", 1)[0] + f"/{pg_name}"
        engine = make_engine(url)
        SQLModel.metadata.create_all(engine)
        straight_through_world(engine, {CABLE: Decimal(100_000), LAMP: Decimal(100_000)})
        acts = SalesActivities(engine, "http://tradeflow.test")
        counter = Counter(engine)
        rng = random.Random(7)
        stats: dict[str, list[tuple[int, float]]] = defaultdict(list)
        # Two lines (cable + lamp) in every order: the ordered-policy invoice at confirmation and the
        # delivered-policy one at settlement both run, as in two orders of three in bench/quote_to_cash.py.
        for i in range(args.orders + 2):
            lines = (OrderLine(CABLE, Decimal(rng.randint(1, 4))), OrderLine(LAMP, Decimal(rng.randint(1, 2))))
            one_order(acts, engine, counter, lines, stats if i >= 2 else defaultdict(list),  # 2 warm-up orders
                      trace=args.trace and i == args.orders + 1)
        print(f"store {args.store}, {args.orders} orders (cable + lamp lines), per call:")
        print("| activity | calls/order | statements (min-max) | ms mean | ms median |")
        print("|---|---|---|---|---|")
        totals = {"activities": [0.0, 0.0], "API": [0.0, 0.0]}  # statements, ms per order
        for name, rows in stats.items():
            counts = [c for c, _ in rows]
            ms = sorted(m for _, m in rows)
            per_order = len(rows) / args.orders
            total = totals["API" if name.startswith("(API)") else "activities"]
            total[0] += sum(counts) / args.orders
            total[1] += sum(ms) / args.orders
            print(f"| {name} | {per_order:g} | {sum(counts) / len(counts):.1f} ({min(counts)}-{max(counts)}) | "
                  f"{sum(ms) / len(ms):.1f} | {ms[len(ms) // 2]:.1f} |")
        print(f"per order: {totals['activities'][0]:.0f} statements, {totals['activities'][1]:.0f} ms in activities; "
              f"{totals['API'][0]:.0f} statements, {totals['API'][1]:.0f} ms in the API's part (quote, payments)")
        engine.dispose()
        if pg_name is not None:
            with sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
