"""Inventory activities on a real SQLite file: results, effects, and a retry that changes nothing."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.inventory import InventoryActivities
from tests.stock_world import build_stock_world
from workflows.contracts import PostStockMoveInput, ReleaseReservationInput, ReserveStockInput


@pytest.fixture
def acts_world(engine):
    return InventoryActivities(engine), build_stock_world(engine)


def test_receive_reserve_ship_release_with_retries(acts_world):
    acts, world = acts_world
    env = ActivityEnvironment()
    receipt = PostStockMoveInput(key="PO-1/1", product_id=world.fifo_id, quantity=D("5"),
                                 source_location_id=world.supplier_loc_id, dest_location_id=world.bin_a_id,
                                 unit_cost=D("4.20"))
    first = env.run(acts.post_stock_move, receipt)
    retried = env.run(acts.post_stock_move, receipt)
    assert (first.value, first.already_posted, retried.already_posted) == (D("21.00"), False, True)

    want = ReserveStockInput(demand_key="SO-1/1", product_id=world.fifo_id, warehouse_id=world.warehouse_id,
                             quantity=D("7"))
    r = env.run(acts.reserve_stock, want)
    assert (r.reserved, r.shortfall) == (D("5"), D("2"))
    assert env.run(acts.reserve_stock, want).newly_reserved == D("0")

    ship = PostStockMoveInput(key="SO-1/1/ship-1", product_id=world.fifo_id, quantity=D("3"),
                              source_location_id=world.stock_id, dest_location_id=world.customer_loc_id,
                              demand_key="SO-1/1")
    assert env.run(acts.post_stock_move, ship).value == D("12.60")
    released = env.run(acts.release_reservation, ReleaseReservationInput(demand_key="SO-1/1"))
    assert released.released == D("2")


def test_business_refusals_are_non_retryable_application_errors(acts_world):
    acts, world = acts_world
    env = ActivityEnvironment()
    too_much = PostStockMoveInput(key="SO-9/ship", product_id=world.fifo_id, quantity=D("1"),
                                  source_location_id=world.stock_id, dest_location_id=world.customer_loc_id)
    with pytest.raises(ApplicationError) as err:
        env.run(acts.post_stock_move, too_much)
    assert err.value.type == "InsufficientStock" and err.value.non_retryable
