"""Stock side effects for workflows. Each activity is one transaction and idempotent by its natural key
(the demand line for reservations, the move key for moves), because Temporal retries activities."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models import inventory
from models.db import transaction
from workflows.contracts import (
    PostStockMoveInput,
    PostStockMoveResult,
    ReleaseReservationInput,
    ReleaseReservationResult,
    ReserveStockInput,
    ReserveStockResult,
)


class InventoryActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn
    def reserve_stock(self, request: ReserveStockInput) -> ReserveStockResult:
        try:
            with transaction(self.engine) as session:
                r = inventory.reserve(
                    session,
                    demand_key=request.demand_key,
                    product_id=request.product_id,
                    warehouse_id=request.warehouse_id,
                    quantity=request.quantity,
                )
        except inventory.StockError as err:
            raise ApplicationError(str(err), type="StockRequestInvalid", non_retryable=True) from err
        return ReserveStockResult(r.demand_key, r.requested, r.reserved, r.newly_reserved, r.shortfall)

    @activity.defn
    def release_reservation(self, request: ReleaseReservationInput) -> ReleaseReservationResult:
        with transaction(self.engine) as session:
            released = inventory.release(session, demand_key=request.demand_key, quantity=request.quantity)
        return ReleaseReservationResult(request.demand_key, released)

    @activity.defn
    def post_stock_move(self, request: PostStockMoveInput) -> PostStockMoveResult:
        try:
            with transaction(self.engine) as session:
                r = inventory.post_move(
                    session,
                    inventory.MoveRequest(
                        key=request.key,
                        product_id=request.product_id,
                        quantity=request.quantity,
                        source_location_id=request.source_location_id,
                        dest_location_id=request.dest_location_id,
                        unit_cost=request.unit_cost,
                        demand_key=request.demand_key,
                        move_date=request.move_date,
                        customer_id=request.customer_id,
                        supplier_id=request.supplier_id,
                    ),
                )
        except inventory.InsufficientStock as err:
            raise ApplicationError(str(err), type="InsufficientStock", non_retryable=True) from err
        except inventory.StockError as err:
            raise ApplicationError(str(err), type="StockRequestInvalid", non_retryable=True) from err
        return PostStockMoveResult(r.move_id, r.key, r.kind.value, r.value, r.journal_entry_id, r.already_posted)
