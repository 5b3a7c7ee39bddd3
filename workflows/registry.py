"""Every workflow the worker runs; the worker and the tests register this same list."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.approval_chain import ApprovalChainWorkflow
    from workflows.quote_to_cash import QuoteToCash, ShipmentWorkflow

ALL_WORKFLOWS: list[type] = [ApprovalChainWorkflow, QuoteToCash, ShipmentWorkflow]
