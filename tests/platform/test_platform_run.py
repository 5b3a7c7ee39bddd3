"""`make run` for real: scripts/run.py starts Temporal, the worker and the API on free ports with a temporary
database, Ctrl-C stops every process it started, and a second run keeps the data and the workflow history."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from config import PROJECT_ROOT
from tests.platform.platform_support import closed_port

START_TIMEOUT = 90  # seconds; a first start migrates and loads the demo data (a few seconds on 2 cores)


class RunProcess:
    """scripts/run.py in its own process group, as a terminal would run `make run`."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.run", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                pytest.fail(f"run.py exited with {self.process.returncode} before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"run.py did not print {text!r} within {timeout} s:\n{self.output}")
            time.sleep(0.2)

    def children(self) -> list[int]:
        return [int(pid) for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]

    def interrupt(self, timeout: float = 40) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def run_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "API_", "DATABASE_URL", "APP_ENV"))}
    env.update(
        API_HOST="127.0.0.1",
        API_PORT=str(closed_port()),
        TEMPORAL_ADDRESS=f"127.0.0.1:{closed_port()}",
        TEMPORAL_UI_PORT=str(closed_port()),
        DATABASE_URL=f"sqlite:///{tmp_path / 'tradeflow.db'}",
        TEMPORAL_DEV_DB=str(tmp_path / "temporal-dev.db"),
    )
    return env


async def test_run_starts_everything_stops_everything_and_keeps_data(run_env, tmp_path):
    api = f"http://127.0.0.1:{run_env['API_PORT']}"
    ui = f"http://127.0.0.1:{run_env['TEMPORAL_UI_PORT']}"
    address = run_env["TEMPORAL_ADDRESS"]
    parked_id = f"platform-run-{uuid.uuid4()}"

    first = RunProcess(run_env, tmp_path / "run-1.log")
    try:
        first.wait_for_output("Tradeflow is running")
        assert "demo data loaded" in first.output
        assert "demo approval policies published: quote v1" in first.output
        # Six demo quotes went through the real processes to the states each role works on.
        assert ("demo orders: Q-000001 draft, Q-000002 pending_approval, Q-000003 sent, Q-000004 confirmed, "
                "Q-000005 credit_hold, Q-000006 delivered") in first.output
        assert f"Pages          {api}" in first.output
        assert f"Temporal UI    {ui}" in first.output
        assert "password for every demo login" in first.output
        children = first.children()
        assert len(children) == 3  # Temporal dev server, worker, API
        for pid in children:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"worker.py" in command or b"uvicorn" in command:
                # Links in e-mails must point at the port this run serves on, not the default 8000.
                assert f"PUBLIC_URL={api}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{api}/healthz")).json() == {"status": "ok"}
            ready = await http.get(f"{api}/readyz")
            assert ready.status_code == 200, ready.text
            assert (await http.get(ui)).status_code == 200
        # A workflow nobody will run: it must still be there, running, after a restart.
        client = await Client.connect(address)
        await client.start_workflow("PlatformRunParked", id=parked_id, task_queue=f"nobody-{uuid.uuid4()}")
    except BaseException:
        first.stop()
        raise
    assert first.interrupt() == 0, first.output
    assert "Tradeflow: stopped." in first.output
    for pid in children:
        assert not Path(f"/proc/{pid}").exists(), f"child {pid} of run.py is still alive"
    for port in (run_env["API_PORT"], address.rpartition(":")[2], run_env["TEMPORAL_UI_PORT"]):
        assert port_is_free(int(port)), f"port {port} is still taken after the stop"

    second = RunProcess(run_env, tmp_path / "run-2.log")
    try:
        second.wait_for_output("Tradeflow is running")
        assert "demo data already present" in second.output
        assert "demo approval policies published" not in second.output  # published once, then left alone
        assert "demo orders:" not in second.output and "demo orders not created" not in second.output
        client = await Client.connect(address)
        described = await client.get_workflow_handle(parked_id).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
    finally:
        assert second.interrupt() == 0, second.output


def test_run_says_which_port_is_taken_and_exits_before_doing_anything(run_env, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        run_env["API_PORT"] = str(port)
        result = subprocess.run(
            [sys.executable, "-m", "scripts.run"], cwd=PROJECT_ROOT, env=run_env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (API_PORT) is already in use by another program" in result.stderr
    assert not (tmp_path / "tradeflow.db").exists(), "it migrated before checking the port"


def test_run_refuses_a_temporal_port_held_by_something_that_is_not_temporal(run_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        run_env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
        result = subprocess.run(
            [sys.executable, "-m", "scripts.run", "--skip-demo"], cwd=PROJECT_ROOT, env=run_env,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 (TEMPORAL_ADDRESS) is in use by a program that is not a Temporal server" in (
        result.stderr
    )
