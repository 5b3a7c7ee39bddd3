"""Side effects: sync methods on <Context>Activities(engine) classes, one transaction each."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from activities.inventory import InventoryActivities


def build_activities(engine: Engine) -> list[Callable]:
    inventory = InventoryActivities(engine)
    return [inventory.reserve_stock, inventory.release_reservation, inventory.post_stock_move]
