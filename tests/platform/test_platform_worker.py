"""worker.py as a real process: it polls the task queue, stops cleanly on SIGINT/SIGTERM, and says clearly
when Temporal cannot be reached."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid

import pytest

from api.health import WorkerMissing, check_worker_polling
from config import PROJECT_ROOT, Settings
from tests.platform.platform_support import closed_port


def worker_environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_URL", "APP_ENV"))}
    env.update(variables)
    return env


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "worker.py",
        cwd=PROJECT_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_worker_polls_the_task_queue_and_stops_cleanly(platform_temporal, sqlite_url, stop_signal):
    client = platform_temporal.client
    address = client.service_client.config.target_host
    queue = f"platform-worker-{uuid.uuid4()}"
    process = await start_worker(
        worker_environment(TEMPORAL_ADDRESS=address, TEMPORAL_TASK_QUEUE=queue, DATABASE_URL=sqlite_url)
    )
    try:
        settings = Settings(_env_file=None, temporal_address=address, temporal_task_queue=queue)
        deadline = time.monotonic() + 30
        polling = None
        while polling is None and time.monotonic() < deadline and process.returncode is None:
            try:
                polling = await check_worker_polling(client, settings)
            except WorkerMissing:
                await asyncio.sleep(0.2)
        assert polling is not None, "worker.py never polled its task queue"
        process.send_signal(stop_signal)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert f"polling task queue {queue!r}" in text
    assert "stopped" in text
    assert "Traceback" not in text


async def test_worker_says_clearly_when_temporal_is_unreachable(sqlite_url):
    address = f"127.0.0.1:{closed_port()}"
    process = await start_worker(worker_environment(TEMPORAL_ADDRESS=address, DATABASE_URL=sqlite_url))
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    text = output.decode()
    assert process.returncode == 1
    assert f"Tradeflow worker: cannot reach Temporal at {address}" in text
    assert "Traceback" not in text
