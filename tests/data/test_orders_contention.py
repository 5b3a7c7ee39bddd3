"""200 confirmed orders compete for scarce stock on PostgreSQL, each reserving in its own transaction from a pool
of threads, as the worker's activity threads would: the shelf is never oversold, every unit on it is promised to
exactly one order, and what each order holds matches the reservation table and the quants."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

from sqlalchemy import func, select
from sqlmodel import Session

from models import orders
from models.stock import Quant, ReservationDemand
from models.sales import SalesOrderLine
from tests.data.test_orders import confirm, line, quote, run
from tests.sales_world import SCARCE, build_sales_world_in

ORDERS = 200
ON_HAND = D("5")  # SCARCE-300 in the sales world
EXTRA = D("295")  # received on top: 300 units for about 400 wanted


def test_two_hundred_orders_never_oversell_scarce_stock_on_postgresql(pg_engine):
    from models.inventory import MoveRequest, post_move

    engine = pg_engine
    world = build_sales_world_in(engine)
    product = world.product_id(SCARCE)
    run(engine, post_move, MoveRequest(key="PO-200/1", product_id=product, quantity=EXTRA,
                                       source_location_id=world.supplier_location_id,
                                       dest_location_id=world.stock_location_id, unit_cost=D("60")))
    rng = random.Random(200)
    # The tight-credit and cash customers have no pricelist; the contractor's limit does not matter here
    # (reservation comes after the credit check in the process, and this test is about the shelf).
    wanted = [D(rng.choice((1, 2, 3))) for _ in range(ORDERS)]
    numbers = [quote(engine, line(SCARCE, str(q)), customer="C-2000") for q in wanted]
    for number in numbers:
        confirm(engine, number)

    def reserve(number: str):
        return run(engine, orders.reserve_order, number)

    order = list(numbers)
    rng.shuffle(order)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = dict(zip(order, pool.map(reserve, order), strict=True))

    total = ON_HAND + EXTRA
    reserved_by_orders = sum((r.lines[0].qty_reserved for r in results.values()), D(0))
    assert sum(wanted) > total  # there really is contention
    assert reserved_by_orders == total  # every unit promised, none twice
    for number, quantity in zip(numbers, wanted, strict=True):
        held = results[number].lines[0].qty_reserved
        assert D(0) <= held <= quantity
        assert results[number].shortfall == quantity - held
    with Session(engine) as s:
        on_hand, quant_reserved = s.execute(
            select(func.sum(Quant.quantity), func.sum(Quant.reserved)).where(Quant.product_id == product)).one()
        assert (D(str(on_hand)), D(str(quant_reserved))) == (total, total)
        assert s.scalar(select(func.count()).select_from(Quant).where(Quant.reserved > Quant.quantity)) == 0
        line_total = s.scalar(select(func.sum(SalesOrderLine.qty_reserved))
                              .where(SalesOrderLine.product_id == product))
        assert D(str(line_total)) == total
        demand_total = s.scalar(select(func.sum(ReservationDemand.reserved))
                                .where(ReservationDemand.product_id == product))
        assert D(str(demand_total)) == total
