"""The raw Temporal ceiling on this machine: what the platform can never beat.

Starts its own dev server with exactly the flags `make run` uses (file database in a temp dir, tuned pragmas
and dynamic config, OS-chosen ports), one worker in its own process (the workflow runner production uses,
workflows.registry.workflow_runner, otherwise default options), and drives two no-op shapes from this process:

    noact   a workflow that returns at once
    act1    a workflow that runs one no-op activity

each at 1 and at 200 workflows in flight. Per cell: one discarded warm-up batch, then fixed-N measured
batches. Throughput counts completed workflows over the batch's wall time; latency is start call to
result, per workflow. CPU is read from /proc for the server and the worker.

    .venv/bin/python bench/temporal_ceiling.py [--repeat 3] [--n1 200] [--n200 2000]

Our own workflows are to be reported as ratios of these figures, measured in the same run
(reference/perf-reliability-anchors.md §e), because absolute numbers drift between runs and machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

# No filesystem calls at import time: the workflow sandbox re-imports this module and refuses them.
SHAPES = {"noact": "BenchNoActivity", "act1": "BenchOneActivity"}
BATCH_TIMEOUT_SECONDS = 600


@activity.defn(name="bench_noop")
async def noop_activity(value: int) -> int:
    return value + 1


@workflow.defn(name="BenchNoActivity")
class NoActivityWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        return value + 1


@workflow.defn(name="BenchOneActivity")
class OneActivityWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity(
            noop_activity, value, start_to_close_timeout=timedelta(seconds=60)
        )


# What worker_main registers from a module: this one's, or another benchmark's (bench/quote_to_cash.py).
WORKFLOWS = [NoActivityWorkflow, OneActivityWorkflow]
ACTIVITIES = [noop_activity]


# ------------------------------------------------------------------------------------------- worker process


def worker_main(address: str, namespace: str, task_queue: str, module: str = "bench.temporal_ceiling") -> None:
    """The worker, in a process of its own (as in production): polls until SIGTERM. It registers the WORKFLOWS
    and ACTIVITIES of `module` (this one by default)."""
    import importlib

    from temporalio.client import Client
    from temporalio.worker import Worker
    from config import data_converter
    from workflows.registry import workflow_runner

    async def run() -> None:
        # The product's converter, so a ratio against these shapes compares workflows, not converters.
        client = await Client.connect(address, namespace=namespace, data_converter=data_converter())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # The runner Tradeflow's own worker uses (unsandboxed, see workflows.registry.workflow_runner): the
        # ceiling and the product then pay the same per-activation cost, and a ratio compares workflows.
        runner = workflow_runner()
        shapes = importlib.import_module(module)
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=shapes.WORKFLOWS,
            activities=shapes.ACTIVITIES,
            workflow_runner=runner,
        ):
            await stop.wait()

    asyncio.run(run())
    _exit_without_finalizing(0)


def _exit_without_finalizing(code: int) -> None:
    # The Temporal client's Rust threads can outlive the event loop and make CPython's teardown abort
    # (temporalio/sdk-python#300); everything is closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------------------------------- measurement


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


async def while_alive(batch, worker: subprocess.Popen) -> dict:
    """The batch's result, or an error as soon as the worker process dies (instead of waiting forever)."""
    task = asyncio.ensure_future(batch)
    while not task.done():
        if worker.poll() is not None:
            task.cancel()
            raise RuntimeError(f"the bench worker exited with code {worker.returncode}")
        await asyncio.wait({task}, timeout=0.5)
    return task.result()


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc (0 where /proc is not available)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy (user+nice+system+irq+softirq+steal), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def child_pid_named(name: str) -> int | None:
    """The pid of our child process whose command name contains `name` (the dev server the SDK spawned)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and name in comm:
            return int(entry.name)
    return None


@dataclass
class Cell:
    shape: str
    in_flight: int
    n: int
    repetitions: list[dict]

    @property
    def summary(self) -> dict:
        def med(key: str) -> float:
            return statistics.median(r[key] for r in self.repetitions)

        def span(key: str) -> tuple[float, float]:
            values = [r[key] for r in self.repetitions]
            return min(values), max(values)

        return {
            "wf_per_s": med("wf_per_s"),
            "wf_per_s_range": span("wf_per_s"),
            "p50_ms": med("p50_ms"),
            "p95_ms": med("p95_ms"),
            "server_cpu_ms_per_wf": med("server_cpu_ms_per_wf"),
            "worker_cpu_ms_per_wf": med("worker_cpu_ms_per_wf"),
            "others_cores": med("others_cores"),
            "errors": sum(r["errors"] for r in self.repetitions),
        }


async def run_batch(client, task_queue: str, workflow_name: str, n: int, in_flight: int) -> dict:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        async with gate:
            started = time.perf_counter()
            try:
                handle = await client.start_workflow(
                    workflow_name, i, id=f"bench-{uuid.uuid4()}", task_queue=task_queue
                )
                await handle.result()
            except Exception:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), BATCH_TIMEOUT_SECONDS)
    wall = time.perf_counter() - began
    cut = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return {"completed": len(latencies), "errors": errors, "wall_s": wall,
            "wf_per_s": len(latencies) / wall, "p50_ms": cut[49] * 1000, "p95_ms": cut[94] * 1000}  # fmt: skip


async def start_dev_server(scratch: Path):
    """A fresh dev server with exactly `make run`'s flags, its history file in `scratch`, OS-chosen ports.
    Returns (the WorkflowEnvironment, the server's pid for CPU readings, the flags)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from scripts.run import TUNED_DEV_SERVER_FLAGS, temporal_cli
    from workflows.search_attributes import dev_server_args

    flags = [*dev_server_args(), *TUNED_DEV_SERVER_FLAGS]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        dev_server_database_filename=str(Path(scratch) / "temporal-dev.db"),
        dev_server_extra_args=flags,
        data_converter=pydantic_data_converter,
    )
    return env, child_pid_named("temporal"), flags


def spawn_shape_worker(client, task_queue: str, log_path: Path,
                       module: str = "bench.temporal_ceiling") -> subprocess.Popen:
    """worker_main in a process of its own, registering `module`'s shapes; output to `log_path`."""
    address = client.service_client.config.target_host
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; from bench.temporal_ceiling import worker_main; worker_main(*sys.argv[1:])",
             address, client.namespace, task_queue, module],
            cwd=project_root(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_worker(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()


async def measure(args: argparse.Namespace) -> tuple[list[Cell], dict]:
    from scripts.run import temporal_cli

    cli = temporal_cli()
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as scratch:
        env, server_pid, flags = await start_dev_server(Path(scratch))
        client = env.client
        task_queue = f"bench-{uuid.uuid4()}"
        worker_log_path = Path(scratch) / "worker.log"
        worker = spawn_shape_worker(client, task_queue, worker_log_path)
        cells: list[Cell] = []
        try:
            for shape, workflow_name in SHAPES.items():
                for in_flight, n in ((1, args.n1), (200, args.n200)):
                    warm = max(in_flight, n // 10)
                    await while_alive(run_batch(client, task_queue, workflow_name, warm, in_flight), worker)
                    cell = Cell(shape, in_flight, n, [])
                    for _ in range(args.repeat):
                        server_cpu, worker_cpu = cpu_seconds(server_pid), cpu_seconds(worker.pid)
                        driver_cpu, machine_cpu = time.process_time(), machine_busy_seconds()
                        result = await while_alive(run_batch(client, task_queue, workflow_name, n, in_flight), worker)
                        done = max(result["completed"], 1)
                        server_used = cpu_seconds(server_pid) - server_cpu
                        worker_used = cpu_seconds(worker.pid) - worker_cpu
                        ours = server_used + worker_used + time.process_time() - driver_cpu
                        result["server_cpu_ms_per_wf"] = server_used * 1000 / done
                        result["worker_cpu_ms_per_wf"] = worker_used * 1000 / done
                        # Cores other programs used meanwhile: on a busy machine the figures are not a ceiling.
                        result["others_cores"] = max(machine_busy_seconds() - machine_cpu - ours, 0) / result["wall_s"]
                        cell.repetitions.append(result)
                    cells.append(cell)
                    print_row(cell, flush=True)
        except BaseException:
            tail = worker_log_path.read_text(errors="replace").splitlines()[-15:]
            print("bench worker log (last lines):\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            stop_worker(worker)
            await env.shutdown()
    version = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout.strip()
    return cells, {"temporal_cli": version, "flags": flags}


# ------------------------------------------------------------------------------------------- report


HEADER = (
    "| shape | in flight | N x reps | wf/s median [min-max] | p50 ms | p95 ms | server CPU ms/wf "
    "| worker CPU ms/wf | other programs, cores | errors |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def print_row(cell: Cell, flush: bool = False) -> None:
    s = cell.summary
    low, high = s["wf_per_s_range"]
    print(
        f"| {cell.shape} | {cell.in_flight} | {cell.n} x {len(cell.repetitions)} | {s['wf_per_s']:.1f} "
        f"[{low:.1f}-{high:.1f}] | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | {s['server_cpu_ms_per_wf']:.1f} | "
        f"{s['worker_cpu_ms_per_wf']:.1f} | {s['others_cores']:.2f} | {s['errors']} |",
        flush=flush,
    )


def python_speed_ms() -> float:
    """A fixed pure-Python loop, best of 3: tells a slow (or throttled) machine from a slow Temporal."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import temporalio.service

    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "temporalio": temporalio.service.__version__, "python_loop_1m_ms": python_speed_ms(),
            "load_average": os.getloadavg()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Raw Temporal ceiling (no-op workflows) on this machine.")
    parser.add_argument("--repeat", type=int, default=1, help="measured batches per cell (default 1)")
    parser.add_argument("--n1", type=int, default=200, help="workflows per batch at 1 in flight")
    parser.add_argument("--n200", type=int, default=2000, help="workflows per batch at 200 in flight")
    args = parser.parse_args()

    about = machine()
    print(f"Temporal ceiling: {about['cpu']}, {about['cores']} cores, Python {about['python']}, "
          f"temporalio {about['temporalio']}; 1M-iteration Python loop {about['python_loop_1m_ms']:.0f} ms; "
          f"load average {' '.join(f'{x:.2f}' for x in about['load_average'])}")  # fmt: skip
    print(HEADER, flush=True)
    started = time.perf_counter()
    cells, server = asyncio.run(measure(args))
    print(f"\n{server['temporal_cli']}; dev server flags: {' '.join(server['flags'])}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total {time.perf_counter() - started:.0f} s")

    results = project_root() / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"temporal_ceiling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": about, "server": server,
                               "cells": [{**asdict(c), "summary": c.summary} for c in cells]}, indent=2))  # fmt: skip
    print(f"results: {out.relative_to(project_root())}")
    _exit_without_finalizing(0)


if __name__ == "__main__":
    sys.path.insert(0, str(project_root()))
    main()
