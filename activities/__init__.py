"""Side effects: sync methods on <Context>Activities(engine) classes, one transaction each."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from activities.approvals import ApprovalActivities
from activities.inventory import InventoryActivities
from activities.sales import SalesActivities


def build_activities(engine: Engine, public_url: str = "http://127.0.0.1:8000") -> list[Callable]:
    inventory = InventoryActivities(engine)
    approvals = ApprovalActivities(engine, public_url)
    sales = SalesActivities(engine, public_url)
    return [
        inventory.reserve_stock,
        inventory.release_reservation,
        inventory.post_stock_move,
        approvals.load_policy,
        approvals.register_request,
        approvals.resolve_candidates,
        approvals.save_task,
        approvals.notify,
        approvals.finish_request,
        sales.load_quote,
        sales.edit_quote,
        sales.set_order_status,
        sales.check_credit,
        sales.reserve_order,
        sales.create_shipment,
        sales.record_shipment_step,
        sales.invoice_order,
        sales.order_balance,
        sales.cancel_order,
        sales.cancel_backorder,
        sales.amend_order,
        sales.notify_order,
        sales.accept_order,
        sales.confirm_order,
        sales.settle_order,
    ]
