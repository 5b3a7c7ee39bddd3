"""Every saved history (tests/workflows/histories/*.json) replays against the current workflow code.

A failure here means a process started by an earlier version of the code would break on this one: make the change
backward compatible (workflow.patched) instead of re-recording the file. See tests/workflows/histories.py.
"""

from __future__ import annotations

import json

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.workflows.histories import HISTORY_DIR
from workflows.registry import ALL_WORKFLOWS, workflow_runner

SAVED = sorted(HISTORY_DIR.glob("*.json"))


def load(path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(f"saved:{path.stem}", data)


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def test_histories_are_saved_for_the_long_running_workflows():
    kinds = {workflow_type(load(p)) for p in SAVED}
    assert {"ApprovalChain", "QuoteToCash", "Shipment"} <= kinds, f"saved histories cover only {sorted(kinds)}"


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
async def test_a_saved_history_replays_against_the_current_code(path):
    replayer = Replayer(workflows=ALL_WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="ApprovalChain", sandboxed=False)
class ChangedApprovalChain:
    """The approval chain as a careless edit might leave it: it no longer loads the policy first."""

    @workflow.run
    async def run(self, request) -> None:
        await workflow.sleep(1)


async def test_a_changed_workflow_fails_the_replay():
    # The check itself must be able to fail: the same saved history against code that issues other commands.
    chain = next(p for p in SAVED if workflow_type(load(p)) == "ApprovalChain")
    replayer = Replayer(workflows=[ChangedApprovalChain], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(load(chain), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
