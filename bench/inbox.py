"""Inbox list latency with 100,000 human tasks in the database: p50/p95 of the JSON list and of the HTML page.

    .venv/bin/python bench/inbox.py                  # SQLite (a fresh file) and PostgreSQL (a database of its own)
    .venv/bin/python bench/inbox.py --store sqlite --tasks 100000 --requests 200
    .venv/bin/python bench/inbox.py --explain        # also print the query plans of the list and count queries

The tasks are spread the way a few years of approvals look: most of them closed (completed, skipped, expired,
cancelled), about one in five open (ready or claimed), over seven approver groups, fifty approvers, five branches
and six document kinds, with deadlines from overdue to next week. Each request goes through the real app in
process (httpx's ASGITransport: routing, authentication by API token, the query, the JSON or the template); the
viewers are a sales manager, a CFO and an admin (who sees everything), over every view and the sort orders.

Target (issue 3): list p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session, SQLModel  # noqa: E402

import models  # noqa: E402,F401  (registers every table)
from api import inbox as inbox_api  # noqa: E402
from api import inbox_pages  # noqa: E402
from api.deps import token_sha256  # noqa: E402
from api.main import create_app  # noqa: E402
from config import Settings  # noqa: E402
from models import inbox  # noqa: E402
from models.approvals import HumanTask, HumanTaskCandidate  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.setup import ensure_role_groups  # noqa: E402
from models.users import ApiToken, User, UserGroup  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET_P95_MS = 50.0

# approver group -> the document kind it mostly approves
GROUPS = {
    "sales-manager": "quote",
    "credit-controller": "credit_hold",
    "purchasing-manager": "purchase_order",
    "finance": "vendor_bill_exception",
    "quality": "customer_return",
    "warehouse": "stock_adjustment",
    "cfo": "quote",
}
GROUP_WEIGHTS = [30, 15, 20, 10, 8, 7, 10]
BRANCHES = ("NBG", "MUC", "HAM", "BER", "FRA")

def status_weights(open_percent: float) -> list[tuple[str, float]]:
    closed = 100 - open_percent
    return [("ready", open_percent * 0.7), ("reserved", open_percent * 0.3), ("completed", closed * 0.92),
            ("skipped", closed * 0.05), ("expired", closed * 0.02), ("cancelled", closed * 0.01)]


# Indexes this benchmark showed the inbox needs; created here when the model does not have them yet.
PROPOSED_INDEXES = {
    "ix_human_task_completed_by": "CREATE INDEX ix_human_task_completed_by ON human_task (completed_by, completed_at)",
    "ix_human_task_owner_status": "CREATE INDEX ix_human_task_owner_status ON human_task (owner, status)",
    # Open tasks only (a few percent of the table): PostgreSQL reads deadlines and ids from the index alone.
    "ix_human_task_open": "CREATE INDEX ix_human_task_open ON human_task (status, due_at, id) "
                          "WHERE status IN ('ready', 'reserved')",
}
VIEWERS = {"mia.manager": ("sales-manager",), "carl.cfo": ("cfo",), "ada.admin": ("admin",)}
APPROVERS_PER_GROUP = 7
JSON_SCENARIOS = [
    (view, sort)
    for view in ("my_tasks", "group_unclaimed", "overdue_and_at_risk", "completed_by_me", "all_open")
    for sort in ("due", "-priority", "created", "-amount")
]
HTML_SCENARIOS = [("my_tasks", "due"), ("group_unclaimed", "due"), ("group_unclaimed", "-amount"),
                  ("overdue_and_at_risk", "due"), ("completed_by_me", "-completed"), ("all_open", "-priority")]


# ------------------------------------------------------------------------------------------- data


def prototype_candidate_status() -> None:
    """Give human_task_candidate the proposed `status` column (a copy of the task's status, index (kind, name,
    status, task_id)) in this process only, so models/inbox.py takes its faster path. Until the model has it."""
    table = HumanTaskCandidate.__table__
    if "status" in table.c:
        return
    table.append_column(sa.Column("status", sa.String(10), nullable=False, server_default="ready"))
    for index in list(table.indexes):
        if index.name == "ix_task_candidate_lookup":
            table.indexes.discard(index)
    sa.Index("ix_task_candidate_lookup", table.c.kind, table.c.name, table.c.status, table.c.task_id)


def _weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> str:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs])[0]


def fill(engine, n_tasks: int, open_percent: float = 5.0, seed: int = 7) -> dict[str, str]:
    """People, API tokens for the viewers, and n_tasks tasks with their candidate rows; returns viewer -> token."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    tokens: dict[str, str] = {}
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    with Session(engine) as session, session.begin():
        groups = ensure_role_groups(session)
        people: dict[str, tuple[str, ...]] = dict(VIEWERS)
        for g in GROUPS:
            for i in range(1, APPROVERS_PER_GROUP + 1):
                people[f"{g.split('-')[0][:5]}{i:02d}"] = (g,)
        for username, roles in people.items():
            user = User(username=username, full_name=username, email=f"{username}@bench.test", password_hash="!")
            session.add(user)
            session.flush()
            session.add_all(UserGroup(user_id=user.id, group_id=groups[r].id) for r in roles)
            for r in roles:
                if r in members:
                    members[r].append(username)
            if username in VIEWERS:
                token = "tf_" + secrets.token_urlsafe(24)
                session.add(ApiToken(user_id=user.id, name="bench", token_sha256=token_sha256(token),
                                     prefix=token[:12]))
                tokens[username] = token

    task_table = HumanTask.__table__
    cand_table = HumanTaskCandidate.__table__
    with_status = "status" in cand_table.c
    group_names = list(GROUPS)
    statuses = status_weights(open_percent)
    batch: list[dict] = []
    cands: list[dict] = []
    with engine.begin() as conn:
        for task_id in range(1, n_tasks + 1):
            group = rng.choices(group_names, weights=GROUP_WEIGHTS)[0]
            kind = GROUPS[group]
            status = _weighted(rng, statuses)
            open_ = status in ("ready", "reserved")
            age = timedelta(hours=rng.uniform(0, 150)) if open_ else timedelta(days=rng.uniform(5, 900))
            created = now - age
            due = created + timedelta(hours=120)
            member = rng.choice(members[group])
            assignee = owner = completed_by = acting_for = outcome = completed_at = None
            delegation = "none"
            if status == "reserved":
                assignee = member
                if rng.random() < 0.08:
                    owner, assignee, delegation = member, rng.choice(members[group]), "pending"
            elif status == "completed":
                assignee = completed_by = member
                outcome = rng.choices(["approved", "rejected", "changes_requested"], weights=[85, 10, 5])[0]
                completed_at = created + timedelta(hours=rng.uniform(0.2, 100))
            number = f"{kind[:2].upper()}-{task_id:07d}"
            batch.append({
                "id": task_id, "task_key": f"{kind}:{number}/step1/round1", "request_key": f"{kind}:{number}",
                "workflow_id": f"approval:{kind}:{number}", "step_index": 0, "round": 0,
                "step_name": f"{group.replace('-', ' ').title()} approval", "kind": kind,
                "title": f"{kind.replace('_', ' ').title()} {number} for customer {rng.randint(1, 4000):04d}",
                "document_ref": number, "requester": f"rep{rng.randint(1, 80):02d}", "branch": rng.choice(BRANCHES),
                "amount": Decimal(rng.randint(100, 250_000)), "status": status, "outcome": outcome,
                "assignee": assignee, "owner": owner, "delegation_state": delegation,
                "priority": rng.choice((25, 50, 50, 50, 70, 90)), "created_at": created,
                "follow_up_at": created + timedelta(hours=24), "escalate_at": created + timedelta(hours=48),
                "due_at": due, "escalation_level": 0, "completed_at": completed_at, "completed_by": completed_by,
                "acting_for": acting_for, "comment": "", "policy_kind": kind, "policy_version": 1,
                "rule_ids": ["r1"], "candidate_groups": [group], "candidate_users": [], "version": 1,
            })
            extra = {"status": status} if with_status else {}
            cands.append({"task_id": task_id, "kind": "group", "name": group, **extra})
            for person in {assignee, owner} - {None}:
                cands.append({"task_id": task_id, "kind": "user", "name": person, **extra})
            if len(batch) >= 5000:
                conn.execute(task_table.insert(), batch)
                conn.execute(cand_table.insert(), cands)
                batch, cands = [], []
        if batch:
            conn.execute(task_table.insert(), batch)
            conn.execute(cand_table.insert(), cands)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # the steady state autovacuum keeps a live database in
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return tokens


# ------------------------------------------------------------------------------------------- timing


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def measure(app, tokens: dict[str, str], n_requests: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"json": [], "html": []}
    per_view: dict[str, list[float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        viewers = list(tokens)

        async def hit(kind: str, url: str, viewer: str) -> float:
            started = time.perf_counter()
            response = await client.get(url, headers={"Authorization": f"Bearer {tokens[viewer]}"})
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (url, response.status_code, response.text[:300])
            return elapsed

        for v in viewers:  # warm up: pools, template compilation, statement caches
            await hit("json", "/api/v1/tasks", v)
            await hit("html", "/inbox", v)
        # The app's fixed cost of any authenticated request (token lookup, user, roles, middleware), for scale.
        per_view["baseline GET /api/v1/me"] = [await hit("json", "/api/v1/me", viewers[i % len(viewers)])
                                               for i in range(min(n_requests, 100))]
        for i in range(n_requests):
            view, sort = JSON_SCENARIOS[i % len(JSON_SCENARIOS)]
            viewer = viewers[i % len(viewers)]
            ms = await hit("json", f"/api/v1/tasks?view={view}&sort={sort}&limit=50", viewer)
            results["json"].append(ms)
            per_view.setdefault(f"json {view}", []).append(ms)
        for i in range(n_requests):
            view, sort = HTML_SCENARIOS[i % len(HTML_SCENARIOS)]
            viewer = viewers[i % len(viewers)]
            ms = await hit("html", f"/inbox?view={view}&sort={sort}", viewer)
            results["html"].append(ms)
            per_view.setdefault(f"html {view}", []).append(ms)
    results.update(per_view)
    return results


def explain(engine) -> None:
    viewer = inbox.Viewer("mia.manager", frozenset({"sales-manager"}))
    now = datetime.now(UTC)
    with Session(engine) as session:
        for view in inbox.VIEWS:
            where = inbox.view_condition(view, viewer, now)
            order = inbox._order_by(inbox.normal_sort(view, None), view)
            stmt = sa.select(HumanTask.id).where(where).order_by(*order).limit(50)
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            print(f"--- {view}")
            for row in session.execute(sa.text(prefix + sql)):
                print("   ", " | ".join(str(c) for c in row))


def report(store: str, results: dict[str, list[float]], fill_seconds: float, n_tasks: int) -> bool:
    print(f"{store}: {n_tasks:,} tasks (filled in {fill_seconds:.1f} s)")
    print(f"  {'what':32} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    ok = True
    for name, values in results.items():
        p50, p95 = statistics.median(values), percentile(values, 95)
        flag = ""
        if name in ("json", "html"):
            ok &= p95 < TARGET_P95_MS
            flag = "  ok" if p95 < TARGET_P95_MS else f"  MISSES the {TARGET_P95_MS:.0f} ms target"
        label = f"{name.upper()} list (all scenarios)" if name in ("json", "html") else f"  {name}"
        print(f"  {label:32} {len(values):5d} {p50:8.1f} {p95:8.1f} {max(values):8.1f}{flag}")
    return ok


def _app(url: str, engine):
    app = create_app(Settings(database_url=url, app_env="test", secret_key="bench-secret-key-0123456789"))
    app.state.engine.dispose()
    app.state.engine = engine
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/tasks" not in paths:
        app.include_router(inbox_api.router)
    if "/inbox" not in paths:
        app.include_router(inbox_pages.router)
    return app


def run_store(store: str, url: str, n_tasks: int, n_requests: int, show_plans: bool, open_percent: float,
              proposed: bool, variant: str = "schema as is") -> bool:
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    existing = {ix["name"] for ix in sa.inspect(engine).get_indexes("human_task")}
    added = []
    if proposed:
        with engine.begin() as conn:
            for name, ddl in PROPOSED_INDEXES.items():
                if name not in existing:
                    conn.exec_driver_sql(ddl)
                    added.append(name)
    started = time.perf_counter()
    tokens = fill(engine, n_tasks, open_percent)
    filled = time.perf_counter() - started
    print(f"\n{store}, {variant}: {open_percent:g} % of the tasks open"
          + (f"; indexes not yet in the model, created here: {', '.join(added)}" if added else ""))
    if show_plans:
        explain(engine)
    app = _app(url, engine)
    results = asyncio.run(measure(app, tokens, n_requests))
    engine.dispose()
    return report(store, results, filled, n_tasks)


@contextmanager
def pg_database() -> Iterator[str | None]:
    """A database of its own on the local PostgreSQL, dropped afterwards; None when no server answers."""
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        print(f"\npostgres: skipped, not reachable at {PG_ADMIN_URL} ({type(exc).__name__})")
        yield None
        return
    name = f"tradeflow_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per kind (JSON, HTML)")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--open-percent", type=float, default=5.0,
                        help="share of open (ready or claimed) tasks; 5 %% of 100,000 is a backlog of 5,000")
    parser.add_argument("--variant", choices=("as-is", "candidate-status", "both"), default="both",
                        help="the schema as it is, with the proposed human_task_candidate.status, or both")
    parser.add_argument("--no-proposed-indexes", action="store_true",
                        help="do not create the indexes proposed for the model (to see what they buy)")
    args = parser.parse_args()
    ok = True
    variants = ("as-is", "candidate-status") if args.variant == "both" else (args.variant,)
    for variant in variants:  # "as-is" first: the prototype changes the table definition in this process
        if variant == "candidate-status":
            prototype_candidate_status()
        label = "schema as is" if variant == "as-is" else "with human_task_candidate.status (proposed)"
        if args.store in ("sqlite", "both"):
            with tempfile.TemporaryDirectory(prefix="inbox-bench-") as folder:
                ok &= run_store("sqlite", f"sqlite:///{folder}/inbox.db", args.tasks, args.requests, args.explain,
                                args.open_percent, not args.no_proposed_indexes, label)
        if args.store in ("postgres", "both"):
            with pg_database() as url:
                if url:
                    ok &= run_store("postgres", url, args.tasks, args.requests, args.explain, args.open_percent,
                                    not args.no_proposed_indexes, label)
    print("\nall list p95 under target" if ok else "\nSOME list p95 above target")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
