"""Inbox list latency with 100,000 human tasks in the database: p50/p95 of the JSON list and of the HTML page.

    .venv/bin/python bench/inbox.py                  # SQLite (a fresh file) and PostgreSQL (a database of its own)
    .venv/bin/python bench/inbox.py --store sqlite --tasks 100000 --requests 200
    .venv/bin/python bench/inbox.py --baseline 465d9d7   # also the code and schema of that revision: before/after
    .venv/bin/python bench/inbox.py --explain        # also print the query plans (PostgreSQL: EXPLAIN ANALYZE)

The tasks are spread the way a few years of approvals look: most of them closed (completed, skipped, expired,
cancelled), about one in twenty open (ready or claimed), over seven approver groups, fifty approvers, five
branches and six document kinds, with deadlines from overdue to next week. Each request goes through the real app
in process (httpx's ASGITransport: routing, authentication by API token, the query, the JSON or the template); the
viewers are a sales manager, a CFO and an admin (who sees everything), over every view and the sort orders.

--baseline REV exports that git revision (`git archive`, the checkout is not touched) and measures it in a
subprocess with this same harness, data and requests, right before this tree on each store, then prints the
ratio of every line (this tree / the baseline): the before and after of a change, under the same machine load.

Target (issue 3): list p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

# --source DIR: measure the application in DIR (a baseline exported by --baseline) instead of this checkout.
SOURCE = Path(sys.argv[sys.argv.index("--source") + 1]).resolve() if "--source" in sys.argv \
    else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SOURCE))

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
    with_status = "status" in cand_table.c  # a baseline from before human_task_candidate.status
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
        with engine.begin() as conn:  # ids were given: move the sequence past them for the rows written later
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('human_task', 'id'), "
                                 "(SELECT coalesce(max(id), 0) + 1 FROM human_task), false)")
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
        per_view["app floor: GET /api/v1/me"] = [await hit("json", "/api/v1/me", viewers[i % len(viewers)])
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
    """The plan of each view's page query (as inbox.search builds it, default sort) and of the counts statement,
    for the sales manager; PostgreSQL runs them (EXPLAIN ANALYZE) to show real row counts and times."""
    viewer = inbox.Viewer("mia.manager", frozenset({"sales-manager"}))
    now = datetime.now(UTC)
    pg = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, COSTS OFF) " if pg else "EXPLAIN QUERY PLAN "
    statements = []
    for view in inbox.VIEWS:
        sort = inbox.normal_sort(view, None)
        stmt = (sa.select(HumanTask.id).where(inbox.view_condition(view, viewer, now, sort))
                .order_by(*inbox._order_by(sort, view)).limit(50))
        statements.append((f"{view}, sort {sort}", str(stmt.compile(engine, compile_kwargs={"literal_binds": True})),
                           None))
    captured: list = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    with Session(engine) as session:
        inbox.view_counts(session, viewer, now)
    sa.event.remove(engine, "before_cursor_execute", grab)
    statements.append(("counts of every view", *captured[-1]))
    with engine.connect() as conn:
        for title, sql, params in statements:
            print(f"--- {title}")
            cursor = conn.connection.cursor()
            cursor.execute(prefix + sql, params or ())
            for row in cursor.fetchall():
                print("   ", row[-1])


def summary(results: dict[str, list[float]]) -> dict[str, tuple[int, float, float, float]]:
    return {name: (len(v), statistics.median(v), percentile(v, 95), max(v)) for name, v in results.items()}


def report(store: str, figures: dict[str, tuple[int, float, float, float]], fill_seconds: float, n_tasks: int,
           label: str, before: dict | None = None) -> bool:
    print(f"{store}, {label}: {n_tasks:,} tasks (filled in {fill_seconds:.1f} s)")
    ratio_head = f" {'p50 ratio':>9} {'p95 ratio':>9}" if before else ""
    print(f"  {'what':32} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}{ratio_head}")
    ok = True
    for name, (n, p50, p95, top) in figures.items():
        flag = ""
        if name in ("json", "html") or name.startswith(("json ", "html ")):
            ok &= p95 < TARGET_P95_MS
            if name in ("json", "html") or p95 >= TARGET_P95_MS:
                flag = "  ok" if p95 < TARGET_P95_MS else f"  MISSES the {TARGET_P95_MS:.0f} ms target"
        ratios = ""
        if before and name in before:
            _, b50, b95, _ = before[name]
            ratios = f" {p50 / b50:9.2f} {p95 / b95:9.2f}"
        label_ = f"{name.upper()} list (all scenarios)" if name in ("json", "html") else f"  {name}"
        print(f"  {label_:32} {n:5d} {p50:8.1f} {p95:8.1f} {top:8.1f}{ratios}{flag}")
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


def run_store(url: str, n_tasks: int, n_requests: int, show_plans: bool, open_percent: float) -> dict:
    """Schema from the models of the tree measured, fill, measure; the figures and the fill time."""
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    started = time.perf_counter()
    tokens = fill(engine, n_tasks, open_percent)
    filled = time.perf_counter() - started
    if show_plans:
        explain(engine)
    app = _app(url, engine)
    results = asyncio.run(measure(app, tokens, n_requests))
    engine.dispose()
    return {"fill_seconds": filled, "figures": summary(results)}


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


def measure_store(store: str, args) -> dict | None:
    """This tree on one store, in this process; None when the store is not there."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="inbox-bench-") as folder:
            return run_store(f"sqlite:///{folder}/inbox.db", args.tasks, args.requests, args.explain,
                             args.open_percent)
    with pg_database() as url:
        return run_store(url, args.tasks, args.requests, args.explain, args.open_percent) if url else None


def measure_baseline(store: str, tree: Path, args) -> dict | None:
    """The baseline tree on one store, in a subprocess of this script (its own imports: the old models)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--source", str(tree), "--store", store,
               "--tasks", str(args.tasks), "--requests", str(args.requests), "--open-percent",
               str(args.open_percent), "--json-out", out.name]
        subprocess.run(cmd, check=True, cwd=tree, stdout=subprocess.DEVNULL)
        data = json.loads(Path(out.name).read_text() or "null")
    return data.get(store) if data else None


@contextmanager
def exported(revision: str) -> Iterator[Path]:
    """The files of a git revision in a temporary folder (git archive: the working tree is not touched)."""
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="inbox-baseline-") as folder:
        archive = subprocess.run(["git", "-C", str(here), "archive", "--format=tar", revision], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per kind (JSON, HTML)")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--open-percent", type=float, default=5.0,
                        help="share of open (ready or claimed) tasks; 5 %% of 100,000 is a backlog of 5,000")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure git revision REV (before/after ratios), e.g. the commit before a change")
    parser.add_argument("--source", help=argparse.SUPPRESS)  # read before the imports (see SOURCE)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # a baseline run hands its figures back
    args = parser.parse_args()
    stores = ("sqlite", "postgres") if args.store == "both" else (args.store,)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({store: measure_store(store, args) for store in stores}))
        return 0
    ok = True
    with exported(args.baseline) if args.baseline else nullcontext() as tree:
        for store in stores:
            before = measure_baseline(store, tree, args) if tree else None
            after = measure_store(store, args)
            if after is None:
                continue
            print(f"\n{store}: {args.open_percent:g} % of the tasks open")
            if before:
                report(store, before["figures"], before["fill_seconds"], args.tasks, f"baseline {args.baseline}")
            ok &= report(store, after["figures"], after["fill_seconds"], args.tasks, "this tree",
                         before["figures"] if before else None)
    print("\nall list p95 under target (this tree)" if ok else "\nSOME list p95 above target (this tree)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
