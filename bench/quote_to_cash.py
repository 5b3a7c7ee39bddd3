"""Straight-through orders on the real stack, as a ratio of the raw Temporal ceiling for the same shape, same run.

One order (tests/q2c_driver.py, what the fault test drives too): the quote row, QuoteToCash started, `submit`
(ApprovalChain child, no rule matches), `accept` (credit check, reservation, confirmation, the lamp invoice, the
Shipment child), picked / packed / shipped Updates on the Shipment, one payment per invoice recorded in the database
and signalled, the result. Latency is quote created → order done, as the driver sees it.

The ceiling twin mirrors that order's shape, read from a real order's history (fetch_history) in this run: the same
number of no-op activities, Updates, signals, timers and child workflows in the same order (BenchOrderTwin below
interprets the token list). It runs on the same dev server in the same run, with its own worker process.

Everything else is bench/temporal_ceiling.py's machinery: a dev server with `make run`'s flags (file history,
WAL, fast polling, one partition), workers in processes of their own (the product worker is `python worker.py`,
exactly as production runs it, with its 16 activity threads and the mailer), CPU read from /proc.

    .venv/bin/python bench/quote_to_cash.py                         # SQLite file (make run's store), 30 orders
    .venv/bin/python bench/quote_to_cash.py --store postgres --orders 60 --in-flight 1,16

Target (issue 4): straight-through throughput ≥ 60 % of the twin's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

if __name__ == "__main__":  # run as a script: the project's packages; imported by the twin's worker: already there
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import workflow  # noqa: E402

# No filesystem calls at import time: the twin's worker imports this module.
with workflow.unsafe.imports_passed_through():
    from bench.temporal_ceiling import noop_activity

ACTIVITY_TIMEOUT = timedelta(seconds=60)
TWIN_TIMER = timedelta(days=30)  # a timer that never fires, as the order's expiry and reminder timers do here


@dataclasses.dataclass(frozen=True)
class TwinScript:
    """A workflow's shape: A activity, U wait for an Update, S wait for a signal, T the next wait has a timer,
    C<i> start child i (its own script in `children`), W wait for the oldest running child to finish."""

    steps: tuple[str, ...]
    children: tuple[tuple[str, ...], ...] = ()


@workflow.defn(name="BenchOrderTwin")
class OrderTwin:
    def __init__(self) -> None:
        self._updates = self._updates_used = 0
        self._signals = self._signals_used = 0
        self._blocked = False  # waiting for the outside world: an Update answers then, as accept does

    @workflow.run
    async def run(self, script: TwinScript) -> int:
        children: list[workflow.ChildWorkflowHandle] = []
        timer = False
        for step in script.steps:
            if step == "A":
                await workflow.execute_activity(noop_activity, 0, start_to_close_timeout=ACTIVITY_TIMEOUT)
            elif step == "T":
                timer = True
            elif step.startswith("C"):
                i = int(step[1:])
                children.append(await workflow.start_child_workflow(
                    OrderTwin.run, TwinScript(script.children[i]), id=f"{workflow.info().workflow_id}/c{i}"))
            else:
                condition = {"U": lambda: self._updates > self._updates_used,
                             "S": lambda: self._signals > self._signals_used,
                             "W": lambda: children[0].done()}[step]
                self._blocked = True
                await workflow.wait_condition(condition, timeout=TWIN_TIMER if timer else None)
                self._blocked, timer = False, False
                if step == "U":
                    self._updates_used += 1
                elif step == "S":
                    self._signals_used += 1
                else:
                    await children.pop(0)
        self._blocked = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(script.steps)

    @workflow.update
    async def advance(self) -> int:
        self._updates += 1
        mine = self._updates
        await workflow.wait_condition(lambda: self._updates_used >= mine and self._blocked)
        return mine

    @workflow.signal
    def poke(self) -> None:
        self._signals += 1


WORKFLOWS = [OrderTwin]
ACTIVITIES = [noop_activity]


# ------------------------------------------------------------------------------------------- the shape


def tokens(events) -> tuple[list[str], list[str]]:
    """The twin's step list for one history, and the ids of the children it started (in order)."""
    from temporalio.api.enums.v1 import EventType as E

    steps: list[str] = []
    children: list[str] = []
    for e in events:
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            steps.append("A")
        elif e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            steps.append("U")
        elif e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            steps.append("S")
        elif e.event_type == E.EVENT_TYPE_TIMER_STARTED:
            steps.append("T")
        elif e.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            steps.append(f"C{len(children)}")
            children.append(e.start_child_workflow_execution_initiated_event_attributes.workflow_id)
        elif e.event_type == E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            steps.append("W")
    return steps, children


def activity_ms(events) -> dict[str, list[float]]:
    """Activity type -> milliseconds from started to completed (the activity's own time, queueing excluded)."""
    from temporalio.api.enums.v1 import EventType as E

    kind, started, spent = {}, {}, {}
    for e in events:
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            kind[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[e.activity_task_started_event_attributes.scheduled_event_id] = e.event_time.ToDatetime()
        elif e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            ms = (e.event_time.ToDatetime() - started[sid]).total_seconds() * 1000
            spent.setdefault(kind[sid], []).append(ms)
    return spent


async def order_shape(client, quote_number: str) -> tuple[TwinScript, dict, dict[str, list[float]]]:
    """The twin script of a finished order, its counts and its activities' times (with its children's)."""
    from workflows.contracts import q2c_id

    async def history(workflow_id: str):
        return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]

    parent = await history(q2c_id(quote_number))
    steps, child_ids = tokens(parent)
    child_steps, events = [], len(parent)
    spent = activity_ms(parent)
    for child_id in child_ids:
        child_events = await history(child_id)
        events += len(child_events)
        for name, times in activity_ms(child_events).items():
            spent.setdefault(name, []).extend(times)
        child_tokens, grandchildren = tokens(child_events)
        assert not grandchildren, "the twin mirrors one level of children"
        child_steps.append(tuple(child_tokens))
    every = [*steps, *(t for c in child_steps for t in c)]
    counts = {k: every.count(t) for k, t in (("activities", "A"), ("updates", "U"), ("signals", "S"), ("timers", "T"))}
    counts["children"] = len(child_ids)
    counts["history events"] = events
    return TwinScript(tuple(steps), tuple(child_steps)), counts, spent


# ------------------------------------------------------------------------------------------- drivers


async def twin_order(client, task_queue: str, script: TwinScript) -> float:
    """Drive one twin as the order's driver drives an order: its Updates, its children's, its signals."""
    started = time.perf_counter()
    handle = await client.start_workflow("BenchOrderTwin", script, id=f"twin-{uuid.uuid4()}", task_queue=task_queue)
    pending: list[int] = []
    for step in script.steps:
        if step == "U":
            await handle.execute_update("advance")
        elif step == "S":
            await handle.signal("poke")
        elif step.startswith("C"):
            pending.append(int(step[1:]))
        elif step == "W":
            i = pending.pop(0)
            child = client.get_workflow_handle(f"{handle.id}/c{i}")
            for _ in range(script.children[i].count("U")):
                await when_started(lambda c=child: c.execute_update("advance"))
            # The order's driver awaits the approval chain and the shipment to the end (a long poll on the server)
            # before it acts on the order again: so does this one.
            await when_started(child.result)
    await handle.result()
    return time.perf_counter() - started


async def when_started(call) -> None:
    """call() on a child workflow, again until its parent has started it."""
    from temporalio.service import RPCError, RPCStatusCode

    while True:
        try:
            await call()
            return
        except RPCError as err:  # the parent has not started it yet
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.01)


async def run_cell(what: str, one, n: int, in_flight: int, pids: dict[str, int | None]) -> dict:
    from bench.temporal_ceiling import cpu_seconds, machine_busy_seconds

    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def wrapped(i: int) -> None:
        async with gate:
            latencies.append(await one(i))

    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    driver_before, machine_before = time.process_time(), machine_busy_seconds()
    began = time.perf_counter()
    await asyncio.gather(*(wrapped(i) for i in range(n)))
    wall = time.perf_counter() - began
    used = {k: cpu_seconds(pid) - before[k] for k, pid in pids.items()}
    driver = time.process_time() - driver_before
    ours = sum(used.values()) + driver
    cut = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [latencies[0]] * 99
    return {"what": what, "in_flight": in_flight, "n": n, "per_s": n / wall, "p50_ms": cut[49] * 1000,
            "p95_ms": cut[94] * 1000, "server_ms": used["server"] * 1000 / n, "worker_ms": used["worker"] * 1000 / n,
            "driver_ms": driver * 1000 / n,
            "others_cores": max(machine_busy_seconds() - machine_before - ours, 0) / wall}  # fmt: skip


# ------------------------------------------------------------------------------------------- the run


def pg_database() -> tuple[str, callable]:
    import sqlalchemy as sa

    admin_url = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"tradeflow_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


async def measure(args: argparse.Namespace) -> None:
    from decimal import Decimal

    from sqlmodel import SQLModel

    import models  # noqa: F401  (registers every table)
    from bench.temporal_ceiling import spawn_shape_worker, start_dev_server, stop_worker, while_alive
    from models.db import make_engine
    from tests.q2c_driver import OrderDriver, plan_order, straight_through_world
    from tests.sales_world import CABLE, LAMP

    levels = [int(x) for x in args.in_flight.split(",")]
    with tempfile.TemporaryDirectory(prefix="tradeflow-q2c-bench-") as scratch:
        scratch = Path(scratch)
        drop = None
        if args.store == "postgres":
            url, drop = pg_database()
        else:
            url = f"sqlite:///{scratch / 'tradeflow.db'}"
        engine = make_engine(url, pool_size=20)
        SQLModel.metadata.create_all(engine)
        world = straight_through_world(engine, {CABLE: Decimal("1000000"), LAMP: Decimal("1000000")})

        if args.bytecode:
            compile_project()
        env, server_pid, flags = await start_dev_server(scratch)
        client = env.client
        q2c_queue, twin_queue = f"q2c-bench-{uuid.uuid4()}", f"twin-bench-{uuid.uuid4()}"
        worker_env = {**os.environ, "DATABASE_URL": url, "APP_ENV": "test",
                      "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                      "TEMPORAL_NAMESPACE": client.namespace, "TEMPORAL_TASK_QUEUE": q2c_queue,
                      "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "9"}  # fmt: skip
        with open(scratch / "q2c-worker.log", "ab") as log:
            q2c_worker = subprocess.Popen([sys.executable, "worker.py"], cwd=Path(__file__).resolve().parent.parent,
                                          env=worker_env, stdout=log, stderr=subprocess.STDOUT)
        twin_worker = spawn_shape_worker(client, twin_queue, scratch / "twin-worker.log", module="bench.quote_to_cash")
        rng = random.Random(4)
        driver = OrderDriver(client, q2c_queue, engine, world.customer_code, poll_seconds=args.poll)

        async def q2c_one(_i: int) -> float:
            return (await driver.run_order(plan_order(rng))).seconds

        try:
            # Warm-up (both workers import, cache, connect), then the shape from a real order with both lines.
            warm = await while_alive(driver.run_order(plan_order(random.Random(1))), q2c_worker)
            script, counts, spent = await order_shape(client, warm.number)
            print(f"one straight-through order ({warm.number}, from its history and its children's): "
                  + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
            print(f"twin script: {' '.join(script.steps)} | children: "
                  + " | ".join(" ".join(c) for c in script.children), flush=True)
            twin_steps = [*script.steps, *(t for c in script.children for t in c)]
            print(f"activities: real order {counts['activities']}, twin {twin_steps.count('A')} (no-op); updates "
                  f"{twin_steps.count('U')}, signals {twin_steps.count('S')}, timers {twin_steps.count('T')}, "
                  f"children {len(script.children)}", flush=True)
            spent = sorted(spent.items(), key=lambda kv: -sum(kv[1]))
            print("its activities, started -> completed (ms, server clock): " + ", ".join(
                f"{name} {len(t)}x {sum(t):.0f}" for name, t in spent) + f"; total {sum(sum(t) for _, t in spent):.0f}",
                flush=True)

            async def twin_one(_i: int) -> float:
                return await twin_order(client, twin_queue, script)

            await while_alive(run_cell("twin", twin_one, max(levels), max(levels), {"server": server_pid,
                                                                                   "worker": twin_worker.pid}),
                              twin_worker)
            print(HEADER, flush=True)
            summaries: list[str] = []
            for in_flight in levels:
                n = max(args.orders, in_flight * 2)
                rows = []
                for _ in range(args.repeat):
                    rows.append((
                        await while_alive(run_cell("twin", twin_one, n, in_flight,
                                                   {"server": server_pid, "worker": twin_worker.pid}), twin_worker),
                        await while_alive(run_cell("q2c", q2c_one, n, in_flight,
                                                   {"server": server_pid, "worker": q2c_worker.pid}), q2c_worker),
                    ))
                for twin, q2c in rows:
                    print_row(twin)
                    print_row(q2c, twin)
                summaries.append(summary(in_flight, rows))
            # The machine's speed drifts between cells (seen here: the same cell's server CPU per order +-15 %
            # from one minute to the next), so one pair says little: the median over the alternating pairs does.
            print()
            for line in summaries:
                print(line, flush=True)
        finally:
            stop_worker(twin_worker)
            stop_worker(q2c_worker)
            driver.close()
            await env.shutdown()
            engine.dispose()
            if drop:
                drop()
    print(f"\nstore: {args.store}; dev server flags: {' '.join(flags)}; order poll interval {args.poll} s")


def compile_project() -> None:
    """Write the project's bytecode before the worker starts, as an image build does (`compileall`).

    This machine sets PYTHONDONTWRITEBYTECODE=1, so nothing ever writes a .pyc: without this, the worker's start
    compiles the project from source. (Under the SDK's sandbox, which re-imported a workflow's module for every
    run, that was a sixth of the worker's CPU; workflows now run unsandboxed, see workflows.registry.)"""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("activities", "models", "workflows"):
        compileall.compile_dir(root / package, quiet=1)


HEADER = (
    "| shape | in flight | N | orders/s | p50 ms | p95 ms | server CPU ms/order | worker CPU ms/order "
    "| driver CPU ms/order | other programs, cores | throughput ratio | p95 ratio |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def summary(in_flight: int, rows: list[tuple[dict, dict]]) -> str:
    """One line per in-flight level: the throughput ratio (and the CPU ratio: twin's CPU per order over the
    order's, all three processes) over the alternating twin/order pairs, median and range."""
    ratios = [q2c["per_s"] / twin["per_s"] for twin, q2c in rows]
    cpu = [sum(twin[k] for k in CPU_KEYS) / sum(q2c[k] for k in CPU_KEYS) for twin, q2c in rows]
    p95 = [q2c["p95_ms"] / twin["p95_ms"] for twin, q2c in rows]
    return (f"{in_flight} in flight, {len(rows)} pairs: throughput ratio median {statistics.median(ratios):.0%} "
            f"({min(ratios):.0%}-{max(ratios):.0%}); CPU ratio median {statistics.median(cpu):.0%} "
            f"({min(cpu):.0%}-{max(cpu):.0%}); p95 ratio median {statistics.median(p95):.1f}x")


CPU_KEYS = ("server_ms", "worker_ms", "driver_ms")


def print_row(r: dict, twin: dict | None = None) -> None:
    ratio = f"{r['per_s'] / twin['per_s']:.0%}" if twin else ""
    p95 = f"{r['p95_ms'] / twin['p95_ms']:.1f}x" if twin else ""
    print(f"| {r['what']} | {r['in_flight']} | {r['n']} | {r['per_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
          f"| {r['server_ms']:.0f} | {r['worker_ms']:.0f} | {r['driver_ms']:.0f} | {r['others_cores']:.2f} "
          f"| {ratio} | {p95} |", flush=True)


def main() -> None:
    from bench.temporal_ceiling import _exit_without_finalizing, machine

    parser = argparse.ArgumentParser(description="Straight-through quote-to-cash vs its raw Temporal twin.")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--orders", type=int, default=30, help="orders per cell (at least 2 x in flight)")
    parser.add_argument("--in-flight", default="1,8", help="comma-separated in-flight levels (default 1,8)")
    parser.add_argument("--repeat", type=int, default=1, help="measured batches per cell")
    parser.add_argument("--poll", type=float, default=0.1, help="the driver's view-query interval, seconds")
    parser.add_argument("--no-bytecode", dest="bytecode", action="store_false",
                        help="do not compile the project's bytecode first (see compile_project)")
    args = parser.parse_args()
    about = machine()
    print(f"quote-to-cash bench: {about['cpu']}, {about['cores']} cores, Python {about['python']}, temporalio "
          f"{about['temporalio']}; 1M-iteration Python loop {about['python_loop_1m_ms']:.0f} ms; load average "
          f"{' '.join(f'{x:.2f}' for x in about['load_average'])}", flush=True)
    started = time.perf_counter()
    asyncio.run(measure(args))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"total {time.perf_counter() - started:.0f} s")
    _exit_without_finalizing(0)


if __name__ == "__main__":
    main()
