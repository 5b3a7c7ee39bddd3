"""A small stock world for data-layer tests: one warehouse with two bins, partner and virtual locations,
the stock accounts, and products of each valuation method."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlmodel import Session

from models.common import AccountType, LocationUsage, ValuationMethod
from models.masterdata import Account, Branch, Company, Location, Product, ProductCategory, UnitOfMeasure, Warehouse


@dataclass
class StockWorld:
    warehouse_id: int
    stock_id: int  # WH/Stock, parent of the bins
    bin_a_id: int
    bin_b_id: int
    supplier_loc_id: int
    customer_loc_id: int
    loss_loc_id: int
    fifo_id: int
    avco_id: int
    standard_id: int


def _location(session, name, usage, parent=None, warehouse_id=None):
    loc = Location(
        name=name.rsplit("/", 1)[-1],
        full_name=name,
        usage=usage,
        parent_id=parent.id if parent else None,
        warehouse_id=warehouse_id,
    )
    session.add(loc)
    session.flush()
    loc.path = (parent.path if parent else "/") + f"{loc.id}/"
    session.add(loc)
    session.flush()
    return loc


def build_stock_world(engine) -> StockWorld:
    with Session(engine) as session, session.begin():
        for code, name, kind in [
            ("1200", "Stock valuation", AccountType.asset),
            ("1210", "Stock interim received", AccountType.asset),
            ("1220", "Stock interim delivered", AccountType.asset),
            ("3900", "Opening balance", AccountType.equity),
            ("5100", "Inventory adjustments", AccountType.expense),
        ]:
            session.add(Account(code=code, name=name, type=kind))
        company = Company(name="Test Electric")
        session.add(company)
        session.flush()
        branch = Branch(company_id=company.id, code="MAIN", name="Main")
        session.add(branch)
        session.flush()
        wh = Warehouse(branch_id=branch.id, code="WH", name="Main warehouse")
        session.add(wh)
        session.flush()
        root = _location(session, "WH", LocationUsage.view, warehouse_id=wh.id)
        stock = _location(session, "WH/Stock", LocationUsage.internal, root, wh.id)
        bin_a = _location(session, "WH/Stock/A", LocationUsage.internal, stock, wh.id)
        bin_b = _location(session, "WH/Stock/B", LocationUsage.internal, stock, wh.id)
        supplier = _location(session, "Partners/Suppliers", LocationUsage.supplier)
        customer = _location(session, "Partners/Customers", LocationUsage.customer)
        loss = _location(session, "Virtual/Inventory loss", LocationUsage.inventory_loss)
        category = ProductCategory(name="Cables", full_name="Cables")
        unit = UnitOfMeasure(name="pc", category="unit")
        session.add_all([category, unit])
        session.flush()
        products = {}
        for method, cost in [
            (ValuationMethod.fifo, "0"),
            (ValuationMethod.avco, "0"),
            (ValuationMethod.standard, "7.5000"),
        ]:
            p = Product(
                sku=f"SKU-{method.value.upper()}",
                name=f"Cable {method.value}",
                category_id=category.id,
                uom_id=unit.id,
                purchase_uom_id=unit.id,
                valuation=method,
                standard_cost=Decimal(cost),
                list_price=Decimal("20.00"),
            )
            session.add(p)
            session.flush()
            products[method] = p.id
        return StockWorld(
            warehouse_id=wh.id,
            stock_id=stock.id,
            bin_a_id=bin_a.id,
            bin_b_id=bin_b.id,
            supplier_loc_id=supplier.id,
            customer_loc_id=customer.id,
            loss_loc_id=loss.id,
            fifo_id=products[ValuationMethod.fifo],
            avco_id=products[ValuationMethod.avco],
            standard_id=products[ValuationMethod.standard],
        )


