"""Demo data load time on SQLite (a temporary file) and PostgreSQL (a temporary database of its own).

Each run starts from an empty database brought to the current schema by the Alembic migrations (as `make run`
does; that time is shown apart), then times `models.demo.load_demo_data` (one transaction, commit included).

    .venv/bin/python bench/demo_load.py [--scale 1.0] [--repeat 3] [--pg-admin-url URL] [--skip-postgres]

PostgreSQL: the admin URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres, or $TEST_POSTGRES_URL)
is used only to CREATE and DROP the benchmark's own database; without a server the PostgreSQL part is skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models  # noqa: E402,F401  (registers every table)
from models.db import make_engine  # noqa: E402
from models.demo import DEFAULT_SEED, DemoSummary, load_demo_data  # noqa: E402
from models.migrate import upgrade_database  # noqa: E402

PG_ADMIN_DEFAULT = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class Run:
    migrate_seconds: float
    cpu_seconds: float  # CPU time of this Python process during the load (the database server's is not in it)
    summary: DemoSummary


def run_once(url: str, seed: int, scale: float) -> Run:
    started = time.perf_counter()
    upgrade_database(url)
    migrate_seconds = time.perf_counter() - started
    engine = make_engine(url)
    try:
        cpu = time.process_time()
        summary = load_demo_data(engine, seed=seed, scale=scale)
        return Run(migrate_seconds, time.process_time() - cpu, summary)
    finally:
        engine.dispose()


def sqlite_runs(repeat: int, seed: int, scale: float) -> list[Run]:
    results = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="tradeflow-demo-bench-") as tmp:
            results.append(run_once(f"sqlite:///{Path(tmp) / 'demo.db'}", seed, scale))
    return results


def postgres_runs(admin_url: str, repeat: int, seed: int, scale: float) -> list[Run] | str:
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # no server: say so and go on with SQLite's figures
        return f"skipped: PostgreSQL not reachable at {admin_url} ({type(exc).__name__})"
    results = []
    try:
        for _ in range(repeat):
            name = f"tradeflow_demo_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                results.append(run_once(admin_url.rsplit("/", 1)[0] + f"/{name}", seed, scale))
            finally:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    return results


def describe(store: str, results: list[Run]) -> str:
    loads = [r.summary.seconds for r in results]
    rows = sum(results[-1].summary.counts.values())
    median = statistics.median(loads)
    return (
        f"{store:<10} load median {median:5.2f} s (runs {', '.join(f'{x:.2f}' for x in loads)}), "
        f"{rows / median:,.0f} rows/s; loader CPU median {statistics.median(r.cpu_seconds for r in results):.2f} s; "
        f"migrations {statistics.median(r.migrate_seconds for r in results):.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_DEFAULT)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()

    load1, load5, _ = os.getloadavg()
    print(f"Demo data load, scale {args.scale:g}, seed {args.seed}, {args.repeat} run(s) per store; "
          f"{os.cpu_count()} CPUs, load average before: {load1:.2f} (1 min) {load5:.2f} (5 min)")
    lite = sqlite_runs(args.repeat, args.seed, args.scale)
    pg = "skipped (--skip-postgres)" if args.skip_postgres else postgres_runs(
        args.pg_admin_url, args.repeat, args.seed, args.scale)

    load1, _, _ = os.getloadavg()
    print(f"load average after: {load1:.2f} (1 min); wall times stretch when other work shares the CPUs")
    print(describe("SQLite", lite))
    print(describe("PostgreSQL", pg) if isinstance(pg, list) else f"PostgreSQL {pg}")
    print("\nRows loaded (last run):")
    counts = lite[-1].summary.counts
    other = pg[-1].summary.counts if isinstance(pg, list) else {}
    width = max(map(len, counts))
    print(f"  {'table':<{width}}  {'SQLite':>8}  {'PostgreSQL':>10}")
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>8,}  {other.get(name, '-'):>10,}" if other else f"  {name:<{width}}  {n:>8,}")
    total_pg = f"{sum(other.values()):>10,}" if other else ""
    print(f"  {'all':<{width}}  {sum(counts.values()):>8,}  {total_pg}")
    if other and other != counts:
        print("  !! the two stores loaded different row counts")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
