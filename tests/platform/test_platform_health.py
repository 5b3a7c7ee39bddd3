"""/healthz and /readyz against real components: a Temporal dev server, a real Worker, SQLite and a dead port."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from api.deps import get_engine
from api.health import CHECK_TIMEOUT_SECONDS, check_database, get_temporal_client, router
from config import Settings, get_settings
from models.db import make_engine
from tests.platform.platform_support import closed_port


@activity.defn(name="platform_health_noop")
async def noop_activity() -> None:
    """Only here so the Worker has something to register and polls the task queue."""


def health_app(settings: Settings, engine: Engine, client: Client | None) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_settings] = lambda: settings
    app.dependency_overrides[get_engine] = lambda: engine
    if client is not None:
        app.state.temporal_client = client

    @app.get("/needs-temporal")
    async def needs_temporal(client: Annotated[Client, Depends(get_temporal_client)]) -> dict:
        return {"namespace": client.namespace}

    return app


def make_settings(**overrides) -> Settings:
    # _env_file=None: a developer's .env must not change what the test checks.
    return Settings(_env_file=None, **overrides)


async def get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        return await http.get(path)


async def test_healthz_says_ok_without_touching_anything(engine):
    # A dead Temporal address: liveness must not depend on it.
    settings = make_settings(temporal_address=f"127.0.0.1:{closed_port()}")
    response = await get(health_app(settings, engine, None), "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_green_when_a_worker_polls_the_task_queue(platform_temporal, engine):
    client = platform_temporal.client
    queue = f"platform-health-{uuid.uuid4()}"
    settings = make_settings(temporal_task_queue=queue, temporal_namespace=client.namespace)
    app = health_app(settings, engine, client)
    async with Worker(client, task_queue=queue, activities=[noop_activity]):
        # The worker's first poll reaches the server a moment after start; give it a few seconds.
        deadline = time.monotonic() + 10
        response = await get(app, "/readyz")
        while response.status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            response = await get(app, "/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "ok",
        "temporal": "ok",
        "worker": "ok",
    }
    assert "sqlite answered SELECT 1" in body["components"]["database"]["detail"]
    assert client.namespace in body["components"]["temporal"]["detail"]
    assert "1 activity poller" in body["components"]["worker"]["detail"]


async def test_readyz_is_503_naming_the_worker_when_nobody_polls(platform_temporal, engine):
    client = platform_temporal.client
    queue = f"platform-health-idle-{uuid.uuid4()}"
    settings = make_settings(temporal_task_queue=queue, temporal_namespace=client.namespace)
    response = await get(health_app(settings, engine, client), "/readyz")
    body = response.json()
    assert response.status_code == 503, body
    assert body["status"] == "unavailable"
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["temporal"]["status"] == "ok"
    assert body["components"]["worker"] == {
        "status": "down",
        "detail": f"no worker polls task queue {queue!r}",
    }


async def test_readyz_is_503_quickly_when_temporal_is_unreachable(engine):
    address = f"127.0.0.1:{closed_port()}"
    app = health_app(make_settings(temporal_address=address), engine, None)
    started = time.monotonic()
    response = await get(app, "/readyz")
    elapsed = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503, body
    assert elapsed < 2 * CHECK_TIMEOUT_SECONDS + 1
    temporal = body["components"]["temporal"]
    assert temporal["status"] == "down"
    assert temporal["detail"].startswith(f"Temporal at {address} not reachable")
    assert body["components"]["worker"]["status"] == "down"
    assert body["components"]["database"]["status"] == "ok"


async def test_readyz_names_a_missing_namespace(platform_temporal, engine):
    client = platform_temporal.client
    settings = make_settings(temporal_namespace=f"missing-{uuid.uuid4().hex[:8]}")
    response = await get(health_app(settings, engine, client), "/readyz")
    body = response.json()
    assert response.status_code == 503, body
    assert body["components"]["temporal"]["status"] == "down"
    assert body["components"]["temporal"]["detail"].startswith("NOT_FOUND")


async def test_readyz_is_503_naming_the_database_when_it_is_down(platform_temporal):
    dead_database = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none")
    client = platform_temporal.client
    settings = make_settings(temporal_namespace=client.namespace)
    try:
        response = await get(health_app(settings, dead_database, client), "/readyz")
    finally:
        dead_database.dispose()
    body = response.json()
    assert response.status_code == 503, body
    database = body["components"]["database"]
    assert database["status"] == "down"
    assert "OperationalError" in database["detail"]
    assert len(database["detail"]) <= 300
    assert body["components"]["temporal"]["status"] == "ok"


async def test_temporal_dependency_answers_503_with_the_reason_when_unreachable(engine):
    address = f"127.0.0.1:{closed_port()}"
    response = await get(health_app(make_settings(temporal_address=address), engine, None), "/needs-temporal")
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"Temporal at {address} not reachable")


async def test_temporal_dependency_connects_once_and_keeps_the_client(platform_temporal, engine):
    address = platform_temporal.client.service_client.config.target_host
    app = health_app(make_settings(temporal_address=address), engine, None)
    first = await get(app, "/needs-temporal")
    kept = app.state.temporal_client
    second = await get(app, "/needs-temporal")
    assert first.status_code == second.status_code == 200
    assert first.json() == {"namespace": "default"}
    assert app.state.temporal_client is kept


@pytest.fixture
def engine(sqlite_url):
    # An empty SQLite file is enough: readiness only asks the database to answer.
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


async def test_the_database_check_does_not_queue_behind_a_writer(engine):
    # On SQLite every SQLAlchemy transaction takes the write lock (BEGIN IMMEDIATE); a readiness probe that
    # waited for it would call a busy database "down".
    with engine.begin() as writer:
        writer.exec_driver_sql("CREATE TABLE busy (id INTEGER)")
        detail = await asyncio.wait_for(check_database(engine), 1.0)
    assert detail.startswith("sqlite answered SELECT 1")


@pytest.mark.postgres
async def test_the_database_check_answers_on_postgresql(pg_database_url):
    pg_engine = make_engine(pg_database_url)
    try:
        assert (await check_database(pg_engine)).startswith("postgresql answered SELECT 1")
    finally:
        pg_engine.dispose()
