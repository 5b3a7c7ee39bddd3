"""Reservations per second on SQLite and PostgreSQL, with and without contention.

Each reservation is one transaction through `models.inventory.reserve` (1 unit for a new demand line), as the
reserve_stock activity runs it. "hot" = every writer on one SKU; "spread" = each writer on its own SKUs.
Every cell ends with a consistency check: reserved == sum of reservation rows <= on hand.

    .venv/bin/python bench/reservations.py [--seconds 3] [--threads 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, SQLModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402,F401
from models.db import make_engine  # noqa: E402
from models.inventory import MoveRequest, post_move, reserve  # noqa: E402
from models.stock import Quant, Reservation  # noqa: E402
from tests.stock_world import build_stock_world  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def prepare(engine, products: int):
    SQLModel.metadata.create_all(engine)
    world = build_stock_world(engine)
    from models.masterdata import Product

    ids = [world.fifo_id]
    with Session(engine) as s, s.begin():
        base = s.get(Product, world.fifo_id)
        for i in range(products - 1):
            p = Product(sku=f"BENCH-{i:05d}", name=f"bench {i}", category_id=base.category_id, uom_id=base.uom_id,
                        purchase_uom_id=base.uom_id)
            s.add(p)
            s.flush()
            ids.append(p.id)
        for n, pid in enumerate(ids):
            post_move(s, MoveRequest(key=f"OPEN-{n}", product_id=pid, quantity=Decimal(1_000_000),
                                     source_location_id=world.supplier_loc_id, dest_location_id=world.bin_a_id,
                                     unit_cost=Decimal("1")))
    return world, ids


def run_cell(engine, world, ids, threads: int, hot: bool, seconds: float):
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def writer(n: int):
        mine = [ids[0]] if hot else ids[n::threads] or [ids[0]]
        local, i = [], 0
        while time.perf_counter() < stop:
            pid = mine[i % len(mine)]
            t0 = time.perf_counter()
            with Session(engine) as s, s.begin():
                reserve(s, demand_key=f"{uuid.uuid4().hex}", product_id=pid, warehouse_id=world.warehouse_id,
                        quantity=Decimal(1))
            local.append(time.perf_counter() - t0)
            i += 1
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    with Session(engine) as s:
        held = Decimal(str(s.scalar(sa.select(sa.func.sum(Quant.reserved)))))
        rows = Decimal(str(s.scalar(sa.select(sa.func.sum(Reservation.quantity)))))
        oversold = s.scalar(sa.select(sa.func.count()).where(Quant.reserved > Quant.quantity))
    consistent = held == rows and oversold == 0
    lat = sorted(latencies)
    return {
        "tx_s": len(lat) / elapsed,
        "p50": statistics.median(lat) * 1000,
        "p95": lat[int(len(lat) * 0.95) - 1] * 1000,
        "n": len(lat),
        "ok": consistent,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", default="1,8")
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    print(f"reservations, {args.seconds:.0f} s per cell, one transaction per reservation of 1 unit")
    print(f"{'store':<22}{'case':<8}{'threads':>8}{'res/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'n':>8}  consistent")
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("SQLite file (WAL)", lambda: make_engine(f"sqlite:///{tmp}/bench-{uuid.uuid4().hex}.db"), None)]
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(sa.text("select 1"))
            stores.append(("PostgreSQL", None, admin))
        except Exception as exc:
            print(f"(PostgreSQL skipped: {type(exc).__name__})")
        for label, sqlite_factory, pg_admin in stores:
            for hot in (True, False):
                for threads in thread_counts:
                    db_name = None
                    if pg_admin is not None:
                        db_name = f"tradeflow_bench_{uuid.uuid4().hex[:8]}"
                        with pg_admin.connect() as c:
                            c.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
                        engine = make_engine(PG_ADMIN.rsplit("/", 1)[0] + f"/{db_name}", pool_size=threads + 2)
                    else:
                        engine = sqlite_factory()
                    world, ids = prepare(engine, 64)
                    r = run_cell(engine, world, ids, threads, hot, args.seconds)
                    engine.dispose()
                    if db_name:
                        with pg_admin.connect() as c:
                            c.execute(sa.text(f'DROP DATABASE "{db_name}" WITH (FORCE)'))
                    case = "hot" if hot else "spread"
                    print(f"{label:<22}{case:<8}{threads:>8}{r['tx_s']:>10.0f}{r['p50']:>9.2f}{r['p95']:>9.2f}"
                          f"{r['n']:>8}  {'yes' if r['ok'] else 'NO'}")
        admin.dispose()


if __name__ == "__main__":
    main()
