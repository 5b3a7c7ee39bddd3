"""The Tradeflow worker: every workflow and activity, polling the Tradeflow task queue.

Run it with `python worker.py` (settings from the environment; see config.py). SIGINT or SIGTERM stops
polling, lets running activities finish for a bounded time, then exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import build_activities
from activities.mailer import run_mailer
from config import Settings, connect_temporal, load_settings
from models.db import make_engine
from workflows.registry import ALL_WORKFLOWS, workflow_runner

log = logging.getLogger("tradeflow.worker")

CONNECT_TIMEOUT_SECONDS = 10
# Activities are short database transactions; a stop should not wait long for them, and whatever is cut
# off is retried by Temporal on the next worker (activities are idempotent by their natural key).
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


async def connect_or_exit(settings: Settings) -> Client:
    try:
        return await asyncio.wait_for(connect_temporal(settings), CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # connection refused, DNS, TLS, timeout: all mean "not reachable" here
        reason = "no answer" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise SystemExit(
            f"Tradeflow worker: cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {reason}\n"
            "  Start it with `make run` (embedded dev server) or point TEMPORAL_ADDRESS at a running server."
        ) from None


async def run_worker(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    client = await connect_or_exit(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    # Activities are sync `def` methods (blocking database work), so they run on this thread pool; the
    # worker may not take more activities than the pool has threads, or tasks would queue invisibly.
    activities = build_activities(engine, settings.public_url)
    with ThreadPoolExecutor(settings.activity_threads, thread_name_prefix="activity") as executor:
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=ALL_WORKFLOWS,
            workflow_runner=workflow_runner(),
            activities=activities,
            activity_executor=executor,
            max_concurrent_activities=settings.activity_threads,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
        running = asyncio.create_task(worker.run())
        # The e-mail outbox sender runs beside the worker and stops on the same signal.
        mailer = asyncio.create_task(run_mailer(engine, settings, stop), name="mailer")
        stopping = asyncio.create_task(stop.wait())
        log.info(
            "polling task queue %r on %s (namespace %s): %d workflows, %d activities",
            settings.temporal_task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
            len(ALL_WORKFLOWS),
            len(activities),
        )
        done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running in done:
            # The worker stopped on its own: a fatal error (for example the server went away for good).
            stopping.cancel()
            stop.set()
            await mailer
            running.result()
            return
        log.info("stopping: finishing running activities (at most %s)", GRACEFUL_SHUTDOWN)
        await worker.shutdown()
        await running
        await mailer
    engine.dispose()
    log.info("stopped")


def exit_without_finalizing(code: int) -> None:
    """Leave now, skipping interpreter teardown.

    The Temporal client's Rust threads can outlive the event loop, and CPython's finalization then aborts
    with "Fatal Python error: PyGILState_Release" (temporalio/sdk-python#300, open). Everything that
    matters is already closed when we get here, so there is nothing for teardown to do but crash.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# Activities allocate many short-lived ORM objects: with the default threshold (700) the collector ran 399 times
# for 60 orders' activities and took 3.3 % of their CPU; with this threshold and the imported modules frozen out of
# its reach, 5 times and 1.2 % (bench/q2c_statements.py under gc.callbacks, 2026-11-28). Cycles are still
# collected, only in larger batches.
GC_GEN0_THRESHOLD = 50_000


def main() -> None:
    import gc

    gc.freeze()  # everything imported so far lives as long as the process: never scanned again
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    try:
        asyncio.run(run_worker(settings))
    except SystemExit as refused:
        if isinstance(refused.code, str):
            print(refused.code, file=sys.stderr)
        exit_without_finalizing(refused.code if isinstance(refused.code, int) else 1)
    except Exception:
        log.exception("the worker failed")
        exit_without_finalizing(1)
    exit_without_finalizing(0)


if __name__ == "__main__":
    main()
