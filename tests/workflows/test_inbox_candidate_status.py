"""The inbox's copy of the task status on its candidate rows follows the task through a real approval chain (a
Temporal dev server and the real activities over SQLite): created ready, claimed reserved (with a row for the
assignee), decided completed, and the next step's task ready for the next group; the inbox views move with it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from models import inbox
from models.approvals import HumanTask, HumanTaskCandidate
from tests.approval_world import publish_policy, two_step_quote_policy
from tests.workflows.test_approval_chain import actor, approve, open_task, start_chain
from workflows.approval_chain import ApprovalChainWorkflow
from workflows.contracts import TaskCommand

MIA = inbox.Viewer("mia.manager", frozenset({"sales-manager"}))
MAX = inbox.Viewer("max.manager", frozenset({"sales-manager"}))
CARL = inbox.Viewer("carl.cfo", frozenset({"cfo"}))


def candidate_rows(engine, task_key: str) -> set[tuple[str, str, str]]:
    with Session(engine) as s:
        rows = s.execute(
            sa.select(HumanTaskCandidate.kind, HumanTaskCandidate.name, HumanTaskCandidate.status)
            .join(HumanTask, HumanTask.id == HumanTaskCandidate.task_id).where(HumanTask.task_key == task_key))
        return {(k, n, getattr(st, "value", st)) for k, n, st in rows}


def listed(engine, viewer: inbox.Viewer, view: str) -> list[str]:
    with Session(engine) as s:
        page = inbox.search(s, viewer, view=view, limit=200)
        assert page.total == page.counts[view] == len(page.rows), (viewer.username, view)
        return [r.task_key for r in page.rows]


async def test_candidate_status_follows_claim_and_decision(temporal_env, worker, people_engine):
    with Session(people_engine) as s, s.begin():
        publish_policy(s, two_step_quote_policy())
    handle = await start_chain(temporal_env.client, worker)

    first = await open_task(handle, 1)
    assert candidate_rows(people_engine, first) == {("group", "sales-manager", "ready")}
    assert listed(people_engine, MAX, "group_unclaimed") == [first]

    await handle.execute_update(ApprovalChainWorkflow.claim, TaskCommand(first, actor("mia.manager")))
    # The update returned: the row and its candidate rows already say "reserved", and mia is named.
    assert candidate_rows(people_engine, first) == {("group", "sales-manager", "reserved"),
                                                    ("user", "mia.manager", "reserved")}
    assert listed(people_engine, MAX, "group_unclaimed") == []
    assert listed(people_engine, MAX, "all_open") == [first]  # claimed by a colleague: still in view
    assert listed(people_engine, MIA, "my_tasks") == [first]

    await approve(handle, first, "mia.manager")
    assert candidate_rows(people_engine, first) == {("group", "sales-manager", "completed"),
                                                    ("user", "mia.manager", "completed")}
    assert listed(people_engine, MIA, "all_open") == []
    assert listed(people_engine, MIA, "completed_by_me") == [first]

    second = await open_task(handle, 2)
    assert candidate_rows(people_engine, second) == {("group", "cfo", "ready")}
    assert listed(people_engine, CARL, "group_unclaimed") == [second]

    await approve(handle, second, "carl.cfo")
    await handle.result()
    assert candidate_rows(people_engine, second) == {("group", "cfo", "completed"),
                                                     ("user", "carl.cfo", "completed")}
    assert listed(people_engine, CARL, "all_open") == []
