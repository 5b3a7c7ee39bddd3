"""A worker on a uuid task queue with the real activities over a fresh SQLite file, per test."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest_asyncio
from sqlmodel import Session
from temporalio.worker import Worker

from activities import build_activities
from tests.approval_world import add_people
from workflows.registry import ALL_WORKFLOWS


@pytest_asyncio.fixture
async def people_engine(engine):
    with Session(engine) as session, session.begin():
        add_people(session)
    return engine


@pytest_asyncio.fixture
async def worker(temporal_env, people_engine):
    task_queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        async with Worker(
            temporal_env.client,
            task_queue=task_queue,
            workflows=ALL_WORKFLOWS,
            activities=build_activities(people_engine),
            activity_executor=pool,
        ):
            yield task_queue
