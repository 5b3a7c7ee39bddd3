"""Fixtures over the small stock world of tests/stock_world.py."""

from __future__ import annotations

import pytest

from tests.stock_world import StockWorld, build_stock_world


@pytest.fixture
def world(engine) -> StockWorld:
    return build_stock_world(engine)


@pytest.fixture
def any_world(any_engine) -> tuple:
    return any_engine, build_stock_world(any_engine)
