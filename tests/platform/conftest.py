"""Fixtures for the platform tests: a real Temporal dev server started with `make run`'s own flags.

Starting it with the same flags (tuned pragmas and dynamic config, Tradeflow search attributes) also proves
this CLI version accepts every one of them. The OS picks the ports: a fixed port that is taken would quietly
connect us to a stranger's server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from scripts.run import TUNED_DEV_SERVER_FLAGS
from tests.platform.platform_support import temporal_cli_path
from workflows.search_attributes import dev_server_args


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform_temporal(tmp_path_factory) -> AsyncIterator[WorkflowEnvironment]:
    history = tmp_path_factory.mktemp("temporal") / "temporal-dev.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_database_filename=str(history),
        dev_server_extra_args=[*dev_server_args(), *TUNED_DEV_SERVER_FLAGS],
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()
