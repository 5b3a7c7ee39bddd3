"""Stock moves: quants, valuation layers (FIFO / AVCO / standard) and Anglo-Saxon journal postings."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models.accounting import account_balance, trial_balance
from models.inventory import InsufficientStock, MoveRequest, StockError, post_move, reserve, stock_levels
from models.ledger import JournalEntry
from models.masterdata import Product
from models.stock import Quant, StockMove, ValuationLayer


def run(engine, fn, *args, **kw):
    with Session(engine, expire_on_commit=False) as s, s.begin():
        return fn(s, *args, **kw)


def receive(engine, world, product_id, quantity, cost, key, bin_id=None):
    return run(engine, post_move, MoveRequest(key=key, product_id=product_id, quantity=D(quantity),
               source_location_id=world.supplier_loc_id, dest_location_id=bin_id or world.bin_a_id,
               unit_cost=D(cost)))


def deliver(engine, world, product_id, quantity, key, demand_key=None):
    return run(engine, post_move, MoveRequest(key=key, product_id=product_id, quantity=D(quantity),
               source_location_id=world.stock_id, dest_location_id=world.customer_loc_id,
               demand_key=demand_key))


def on_hand(engine, product_id):
    with Session(engine) as s:
        return D(str(s.scalar(select(func.coalesce(func.sum(Quant.quantity), 0)).where(Quant.product_id == product_id))))


def test_fifo_delivery_consumes_oldest_layers_and_posts_anglo_saxon_entries(any_world):
    engine, world = any_world
    r1 = receive(engine, world, world.fifo_id, "10", "5.00", "PO-1/1")
    receive(engine, world, world.fifo_id, "10", "6.00", "PO-2/1", bin_id=world.bin_b_id)
    assert r1.value == D("50.00") and r1.kind == "receipt"
    out = deliver(engine, world, world.fifo_id, "15", "SO-1/1")
    # 10 at 5.00 from the first layer, 5 at 6.00 from the second
    assert out.value == D("80.00") and out.kind == "delivery"
    assert on_hand(engine, world.fifo_id) == D("5")
    with Session(engine) as s:
        assert account_balance(s, "1200") == D("30.00")  # 110 in, 80 out
        assert account_balance(s, "1210") == D("-110.00")  # interim received waits for the vendor bills
        assert account_balance(s, "1220") == D("80.00")  # interim delivered waits for the customer invoice
        debit, credit = trial_balance(s)
        assert debit == credit == D("190.00")
        remaining = s.execute(
            select(ValuationLayer.remaining_qty, ValuationLayer.remaining_value)
            .where(ValuationLayer.product_id == world.fifo_id, ValuationLayer.quantity > 0)
            .order_by(ValuationLayer.id)
        ).all()
        assert [(D(str(q)), D(str(v))) for q, v in remaining] == [(D("0"), D("0")), (D("5"), D("30.00"))]
        total_value = s.scalar(select(func.sum(ValuationLayer.value)).where(ValuationLayer.product_id == world.fifo_id))
        assert D(str(total_value)).quantize(D("0.01")) == D("30.00")


def test_avco_keeps_the_running_average(any_world):
    engine, world = any_world
    receive(engine, world, world.avco_id, "10", "5.00", "PO-1/1")
    receive(engine, world, world.avco_id, "30", "7.00", "PO-2/1")
    with Session(engine) as s:
        assert D(s.get(Product, world.avco_id).standard_cost) == D("6.5000")  # (50 + 210) / 40
    out = deliver(engine, world, world.avco_id, "4", "SO-1/1")
    assert out.value == D("26.00")
    receive(engine, world, world.avco_id, "4", "10.00", "PO-3/1")
    with Session(engine) as s:
        # (36 x 6.50 + 40) / 40 = 6.85
        assert D(s.get(Product, world.avco_id).standard_cost) == D("6.8500")
        assert account_balance(s, "1200") == D("274.00")


def test_standard_cost_values_both_ways_at_standard(any_world):
    engine, world = any_world
    r = receive(engine, world, world.standard_id, "2", "9.99", "PO-1/1")
    assert r.value == D("15.00")  # 2 x 7.50, whatever the purchase price
    assert deliver(engine, world, world.standard_id, "1", "SO-1/1").value == D("7.50")


def test_posting_the_same_move_twice_posts_once(any_world):
    engine, world = any_world
    first = receive(engine, world, world.fifo_id, "10", "5.00", "PO-1/1")
    again = receive(engine, world, world.fifo_id, "10", "5.00", "PO-1/1")
    assert again.already_posted and again.move_id == first.move_id and again.value == D("50.00")
    assert on_hand(engine, world.fifo_id) == D("10")
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(StockMove)) == 1
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == 1
        assert s.scalar(select(func.count()).select_from(ValuationLayer)) == 1
    with pytest.raises(StockError, match="already used"):
        receive(engine, world, world.fifo_id, "11", "5.00", "PO-1/1")


def test_delivery_never_takes_stock_reserved_for_another_demand(any_world):
    engine, world = any_world
    receive(engine, world, world.fifo_id, "10", "5.00", "PO-1/1")
    run(engine, reserve, demand_key="SO-9/1", product_id=world.fifo_id, warehouse_id=world.warehouse_id,
        quantity=D("8"))
    with pytest.raises(InsufficientStock):
        deliver(engine, world, world.fifo_id, "3", "SO-1/1")
    # The failed move left nothing behind: no move row, same stock, no journal entry.
    assert on_hand(engine, world.fifo_id) == D("10")
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(StockMove)) == 1
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == 1
    # The demand that holds the reservation ships its own units, part first: the move says what it still holds.
    first = deliver(engine, world, world.fifo_id, "5", "SO-9/1/ship", demand_key="SO-9/1")
    assert (first.demand_reserved, first.already_posted) == (D("3"), False)
    assert deliver(engine, world, world.fifo_id, "5", "SO-9/1/ship", demand_key="SO-9/1").demand_reserved is None
    assert deliver(engine, world, world.fifo_id, "3", "SO-9/1/ship2", demand_key="SO-9/1").demand_reserved == D("0")
    with Session(engine) as s:
        levels, total = stock_levels(s, product_id=world.fifo_id)
    assert total == 1
    assert (levels[0].on_hand, levels[0].reserved, levels[0].available) == (D("2"), D("0"), D("2"))


def test_inventory_adjustment_posts_against_the_adjustment_account(any_world):
    engine, world = any_world
    receive(engine, world, world.fifo_id, "10", "5.00", "PO-1/1")
    run(engine, post_move, MoveRequest(key="ADJ-1", product_id=world.fifo_id, quantity=D("2"),
        source_location_id=world.bin_a_id, dest_location_id=world.loss_loc_id))
    with Session(engine) as s:
        assert account_balance(s, "5100") == D("10.00")
        assert account_balance(s, "1200") == D("40.00")


def test_nonsense_moves_are_refused(world, engine):
    with pytest.raises(StockError, match="positive"):
        receive(engine, world, world.fifo_id, "0", "5.00", "X-1")
    with pytest.raises(StockError, match="no stock move"):
        run(engine, post_move, MoveRequest(key="X-2", product_id=world.fifo_id, quantity=D("1"),
            source_location_id=world.supplier_loc_id, dest_location_id=world.customer_loc_id))
