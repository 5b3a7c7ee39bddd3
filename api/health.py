"""Liveness and readiness: GET /healthz (the process answers) and GET /readyz (it can do its work).

/readyz checks each component with its own bounded timeout and reports all of them, so an operator sees
at once which one is down; it answers 503 when any is down and never fails with a 500.

The engine comes from `api.deps.get_engine`; the Temporal client from `get_temporal_client` here, which
uses `app.state.temporal_client` when the app has set it and otherwise connects from the settings once and
keeps the client on `app.state`. Tests override `get_settings` / `get_engine` through
`app.dependency_overrides`, or set `app.state.temporal_client`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import datetime, timedelta, timezone
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import EngineDep, SettingsDep
from config import Settings, connect_temporal

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0
# An idle worker's long poll lasts about a minute and the server records the poll when it starts, so a
# live worker's last poll can be ~60 s old; a worker that stopped looks the same until this age is passed.
WORKER_POLL_MAX_AGE = timedelta(seconds=75)
_DETAIL_MAX_CHARS = 300


class ComponentStatus(BaseModel):
    status: Literal["ok", "down"]
    detail: str


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    components: dict[str, ComponentStatus]


class TemporalUnreachable(Exception):
    """Connecting to the Temporal server failed or timed out."""


class WorkerMissing(Exception):
    """No worker has polled the task queue recently."""


async def _connected_client(request: Request, settings: Settings) -> Client:
    state = request.app.state
    client = getattr(state, "temporal_client", None)
    if client is not None:
        return client
    lock = getattr(state, "temporal_connect_lock", None)
    if lock is None:
        lock = state.temporal_connect_lock = asyncio.Lock()
    async with lock:
        client = getattr(state, "temporal_client", None)
        if client is None:
            try:
                client = await asyncio.wait_for(connect_temporal(settings), CHECK_TIMEOUT_SECONDS)
            except Exception as exc:
                raise TemporalUnreachable(
                    f"Temporal at {settings.temporal_address} not reachable: {_reason(exc)}"
                ) from exc
            state.temporal_client = client
    return client


async def get_temporal_client(request: Request, settings: SettingsDep) -> Client:
    """The app's Temporal client; a 503 with the reason when the server cannot be reached."""
    try:
        return await _connected_client(request, settings)
    except TemporalUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness, "description": "a component is down"}},
)
async def readyz(request: Request, response: Response, engine: EngineDep, settings: SettingsDep) -> Readiness:
    async def temporal_and_worker() -> tuple[ComponentStatus, ComponentStatus]:
        try:
            client = await _connected_client(request, settings)
        except TemporalUnreachable as exc:
            down = ComponentStatus(status="down", detail=_clip(str(exc)))
            return down, ComponentStatus(status="down", detail="cannot be checked: Temporal is not reachable")
        return await asyncio.gather(
            _checked(check_temporal_namespace(client, settings)),
            _checked(check_worker_polling(client, settings)),
        )

    database, (temporal, worker) = await asyncio.gather(
        _checked(check_database(engine)), temporal_and_worker()
    )
    components = {"database": database, "temporal": temporal, "worker": worker}
    ready = all(c.status == "ok" for c in components.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ok" if ready else "unavailable", components=components)


async def check_database(engine: Engine) -> str:
    def select_one() -> float:
        started = time.perf_counter()
        # At the DBAPI level on purpose: a SQLAlchemy transaction on our SQLite engine opens with BEGIN
        # IMMEDIATE (models/db.py), so a probe would queue behind every writer and report a busy database
        # as down. A bare SELECT 1 takes no lock; the pool rolls the connection back when it is returned.
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            cursor.close()
        finally:
            connection.close()
        return time.perf_counter() - started

    # A blocking driver call: in a thread, so a hung database cannot stall the event loop. On timeout the
    # thread is left to finish on its own (the driver offers no portable way to cancel a connect).
    elapsed = await asyncio.to_thread(select_one)
    return f"{engine.dialect.name} answered SELECT 1 in {elapsed * 1000:.0f} ms"


async def check_temporal_namespace(client: Client, settings: Settings) -> str:
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=settings.temporal_namespace),
        timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS),
    )
    return f"namespace {described.namespace_info.name} described"


async def check_worker_polling(client: Client, settings: Settings) -> str:
    """A worker counts when it polled the task queue (workflow or activity side) recently."""
    queue = settings.temporal_task_queue

    async def pollers(queue_type: TaskQueueType.ValueType) -> list:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=queue_type,
            ),
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS),
        )
        return list(described.pollers)

    workflow_pollers, activity_pollers = await asyncio.gather(
        pollers(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), pollers(TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    )
    now = datetime.now(timezone.utc)

    def age(poller) -> timedelta:
        return now - poller.last_access_time.ToDatetime(timezone.utc)

    live_workflow = [p for p in workflow_pollers if age(p) <= WORKER_POLL_MAX_AGE]
    live_activity = [p for p in activity_pollers if age(p) <= WORKER_POLL_MAX_AGE]
    if live_workflow or live_activity:
        return (
            f"task queue {queue!r}: {len(live_workflow)} workflow and "
            f"{len(live_activity)} activity poller(s)"
        )
    stale = workflow_pollers + activity_pollers
    last_seen = (
        f"; last poll {min(age(p) for p in stale).total_seconds():.0f} s ago" if stale else ""
    )
    raise WorkerMissing(f"no worker polls task queue {queue!r}{last_seen}")


async def _checked(check: Awaitable[str]) -> ComponentStatus:
    """Run one check within the timeout; any failure becomes a 'down' status with a short reason."""
    try:
        detail = await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # a readiness probe reports failures, it never raises them
        return ComponentStatus(status="down", detail=_clip(_reason(exc)))
    return ComponentStatus(status="ok", detail=detail)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    if isinstance(exc, RPCError):
        return f"{exc.status.name}: {exc.message}"
    if isinstance(exc, (WorkerMissing, TemporalUnreachable)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"
