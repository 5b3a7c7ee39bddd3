"""Every workflow the worker runs, and the runner it runs them with; the worker, the tests, the replayer and the
benchmarks register this same list with this same runner."""

from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner

with workflow.unsafe.imports_passed_through():
    from workflows.approval_chain import ApprovalChainWorkflow
    from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow

ALL_WORKFLOWS: list[type] = [ApprovalChainWorkflow, QuoteToCash, ShipmentWorkflow]


def workflow_runner() -> WorkflowRunner:
    """The runner of every Tradeflow workflow: without the SDK's sandbox.

    The sandbox checks every workflow activation (module proxies, restricted builtins, a fresh module per run).
    In bench/quote_to_cash.py that cost about a fifth of the worker's CPU: 374 → 293 ms per straight-through order
    at 8 in flight (2026-11-28). Its job, catching non-deterministic calls in workflow code, is done instead by
    tests/workflows/test_determinism.py (no clock, randomness, I/O or threads in workflows/) and by replaying every
    saved history in CI (tests/workflows/test_replay.py). Workflow modules keep no module-level mutable state:
    without the sandbox, runs in one worker share their modules."""
    return UnsandboxedWorkflowRunner()
