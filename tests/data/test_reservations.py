"""Reservation: FIFO, idempotent per demand line, and never more than on hand under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models.inventory import MoveRequest, StockError, post_move, release, reserve
from models.stock import Quant, Reservation, ReservationDemand


def run(engine, fn, **kw):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return fn(s, **kw)


def stock_in(engine, world, quantity, key, bin_id=None, product_id=None):
    run(engine, post_move, request=MoveRequest(
        key=key, product_id=product_id or world.fifo_id, quantity=D(quantity),
        source_location_id=world.supplier_loc_id, dest_location_id=bin_id or world.bin_a_id, unit_cost=D("5")))


def reserve_one(engine, world, key, quantity="1"):
    return run(engine, reserve, demand_key=key, product_id=world.fifo_id, warehouse_id=world.warehouse_id,
               quantity=D(quantity))


def totals(engine, product_id):
    with Session(engine) as s:
        on_hand, held = s.execute(
            select(func.coalesce(func.sum(Quant.quantity), 0), func.coalesce(func.sum(Quant.reserved), 0))
            .where(Quant.product_id == product_id)
        ).one()
        by_rows = s.scalar(select(func.coalesce(func.sum(Reservation.quantity), 0)))
        by_demands = s.scalar(select(func.coalesce(func.sum(ReservationDemand.reserved), 0)))
    return D(str(on_hand)), D(str(held)), D(str(by_rows)), D(str(by_demands))


def test_reserves_oldest_stock_first_and_reports_the_shortfall(any_world):
    engine, world = any_world
    stock_in(engine, world, "4", "PO-1", world.bin_b_id)
    stock_in(engine, world, "3", "PO-2", world.bin_a_id)
    result = reserve_one(engine, world, "SO-1/1", "6")
    assert (result.reserved, result.newly_reserved, result.shortfall) == (D("6"), D("6"), D("0"))
    with Session(engine) as s:
        held = dict(s.execute(select(Quant.location_id, Quant.reserved)).all())
    assert D(str(held[world.bin_b_id])) == D("4")  # the older receipt is taken first
    assert D(str(held[world.bin_a_id])) == D("2")
    short = reserve_one(engine, world, "SO-2/1", "5")
    assert (short.reserved, short.shortfall) == (D("1"), D("4"))


def test_repeating_a_request_reserves_nothing_more(any_world):
    engine, world = any_world
    stock_in(engine, world, "10", "PO-1")
    first = reserve_one(engine, world, "SO-1/1", "3")
    again = reserve_one(engine, world, "SO-1/1", "3")
    assert (first.newly_reserved, again.newly_reserved, again.reserved) == (D("3"), D("0"), D("3"))
    # A short demand tops up when stock arrives, still only to what it asked.
    short = reserve_one(engine, world, "SO-2/1", "9")
    assert short.reserved == D("7")
    stock_in(engine, world, "5", "PO-2")
    topped = reserve_one(engine, world, "SO-2/1", "9")
    assert (topped.newly_reserved, topped.reserved) == (D("2"), D("9"))
    assert totals(engine, world.fifo_id) == (D("15"), D("12"), D("12"), D("12"))


def test_release_gives_stock_back_and_is_safe_to_repeat(any_world):
    engine, world = any_world
    stock_in(engine, world, "10", "PO-1")
    reserve_one(engine, world, "SO-1/1", "6")
    assert run(engine, release, demand_key="SO-1/1", quantity=D("2")) == D("2")
    assert run(engine, release, demand_key="SO-1/1") == D("4")
    assert run(engine, release, demand_key="SO-1/1") == D("0")
    assert run(engine, release, demand_key="never-reserved") == D("0")
    assert totals(engine, world.fifo_id) == (D("10"), D("0"), D("0"), D("0"))


def test_refuses_bad_requests(world, engine):
    with pytest.raises(StockError, match="positive"):
        reserve_one(engine, world, "SO-1/1", "0")
    with pytest.raises(StockError, match="unknown product"):
        run(engine, reserve, demand_key="x", product_id=999, warehouse_id=world.warehouse_id, quantity=D(1))
    reserve_one(engine, world, "SO-1/1", "1")
    with pytest.raises(StockError, match="another product"):
        run(engine, reserve, demand_key="SO-1/1", product_id=world.avco_id, warehouse_id=world.warehouse_id,
            quantity=D(1))


def _concurrently(engine, world, keys):
    def attempt(key):
        return reserve_one(engine, world, key).newly_reserved

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(attempt, keys))


def test_fifty_concurrent_requests_never_reserve_more_than_on_hand(any_world):
    engine, world = any_world
    stock_in(engine, world, "6", "PO-1", world.bin_a_id)
    stock_in(engine, world, "4", "PO-2", world.bin_b_id)
    results = _concurrently(engine, world, [f"SO-{i}/1" for i in range(50)])
    assert sum(results) == D("10")
    assert sorted(results, reverse=True)[:10] == [D("1")] * 10
    assert totals(engine, world.fifo_id) == (D("10"), D("10"), D("10"), D("10"))


def test_concurrent_repeats_of_one_demand_reserve_it_once(any_world):
    engine, world = any_world
    stock_in(engine, world, "10", "PO-1")
    results = _concurrently(engine, world, ["SO-7/1"] * 20)
    assert sum(results) == D("1")
    assert totals(engine, world.fifo_id) == (D("10"), D("1"), D("1"), D("1"))
