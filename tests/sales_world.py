"""A small sales world for quote-to-cash tests (data, activities, workflows, API).

`build_sales_world(session)` adds, in the caller's transaction (it flushes, never commits):

- the company with branch "HQ", chart of accounts, VAT 19 %, units, payment terms and role groups
  (models.setup.create_base_setup), warehouse "WH" with WH/Stock;
- categories All → Cables and All → Lighting;
- products (VAT 19 %, FIFO) received into WH/Stock at their cost (Dr 1200 / Cr 1210):

  | sku        | category | invoice policy | list    | cost    | on hand | contractor price                      |
  |------------|----------|----------------|---------|---------|---------|---------------------------------------|
  | CAB-100    | Cables   | delivered      |  10.00  |   6.00  |   100   | 9.00 (category rule: 10 % off list)   |
  | LAMP-200   | Lighting | ordered        |  50.00  |  30.00  |    20   | 45.00 from 10 pieces (fixed), else 50 |
  | SCARCE-300 | All      | delivered      | 100.00  |  60.00  |     5   | 89.99 (formula: cost +50 %, round 1, −0.01) |
  | DROP-400   | All      | delivered      | 200.00  | 150.00  |     0   | 200.00 (drop-ship item)               |

- customers:
  C-1000 "Elektro Muster GmbH", contractor, pricelist "Contractors", Net 30, credit limit 5,000.00,
  branch HQ, ship_available;
  C-2000 "Cash & Carry Meier", retailer, no pricelist, Immediate, no credit limit, backorder "ask";
  C-3000 "Tight Credit KG", project, no pricelist, Net 14, credit limit 1,000.00, ship_complete;
- people (idempotent by username, so it composes with tests/approval_world.add_people, which the `worker`
  fixture runs first): sam.sales, sven.sales, maria.manager, carla.credit, walter.warehouse, fiona.finance,
  clara.cfo.

The workflow and web tests import this module: keep `build_sales_world` and the names below stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session

from models.common import BackorderPreference, InvoicePolicy, PricelistRuleKind
from models.inventory import MoveRequest, post_move
from models.masterdata import Customer, Pricelist, PricelistRule
from models.setup import SALES_VAT, create_base_setup, create_category, create_product, ensure_role_groups
from models.users import User, UserGroup

CABLE = "CAB-100"
LAMP = "LAMP-200"
SCARCE = "SCARCE-300"
DROP = "DROP-400"

CUSTOMER = "C-1000"
CASH_CUSTOMER = "C-2000"
TIGHT_CUSTOMER = "C-3000"

# username -> roles (group names of models.users.ROLES)
SALES_PEOPLE = {
    "sam.sales": ("sales",),
    "sven.sales": ("sales",),
    "maria.manager": ("sales-manager",),
    "carla.credit": ("credit-controller",),
    "walter.warehouse": ("warehouse",),
    "fiona.finance": ("finance",),
    "clara.cfo": ("cfo",),
}


@dataclass
class SalesWorld:
    company_id: int
    branch_id: int
    branch_code: str
    warehouse_id: int
    warehouse_code: str
    stock_location_id: int
    customer_location_id: int
    supplier_location_id: int
    category_all_id: int
    category_cables_id: int
    category_lighting_id: int
    pricelist_id: int
    customer_id: int  # C-1000, contractor with pricelist and a 5,000 limit
    cash_customer_id: int  # C-2000, no limit, asks about backorders
    tight_customer_id: int  # C-3000, 1,000 limit, ship_complete
    products: dict[str, int] = field(default_factory=dict)  # sku -> product id
    customer_code: str = CUSTOMER
    cash_customer_code: str = CASH_CUSTOMER
    tight_customer_code: str = TIGHT_CUSTOMER
    rep: str = "sam.sales"

    def product_id(self, sku: str) -> int:
        return self.products[sku]


def ensure_sales_people(session: Session) -> dict[str, int]:
    """The people of SALES_PEOPLE with their role groups; existing users keep their row and gain missing roles."""
    groups = ensure_role_groups(session)
    ids: dict[str, int] = {}
    for username, roles in SALES_PEOPLE.items():
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            user = User(username=username, full_name=username.replace(".", " ").title(),
                        email=f"{username}@tradeflow.test", password_hash="!")
            session.add(user)
            session.flush()
        have = set(session.scalars(select(UserGroup.group_id).where(UserGroup.user_id == user.id)))
        session.add_all(UserGroup(user_id=user.id, group_id=groups[r].id) for r in roles if groups[r].id not in have)
        ids[username] = user.id
    session.flush()
    return ids


def build_sales_world(session: Session) -> SalesWorld:
    base = create_base_setup(session)
    vat = base.taxes[SALES_VAT]
    pc = base.uoms["pc"]
    cables = create_category(session, "Cables", base.category, accounts=base.accounts)
    lighting = create_category(session, "Lighting", base.category, accounts=base.accounts)

    specs = [
        (CABLE, cables, InvoicePolicy.delivered, "10.00", "6.00", "100"),
        (LAMP, lighting, InvoicePolicy.ordered, "50.00", "30.00", "20"),
        (SCARCE, base.category, InvoicePolicy.delivered, "100.00", "60.00", "5"),
        (DROP, base.category, InvoicePolicy.delivered, "200.00", "150.00", "0"),
    ]
    products: dict[str, int] = {}
    for sku, category, policy, list_price, cost, on_hand in specs:
        product = create_product(session, sku, category, pc, list_price=D(list_price), cost=D(cost),
                                 invoice_policy=policy, tax=vat)
        products[sku] = product.id
        if D(on_hand) > 0:
            post_move(session, MoveRequest(key=f"world:receipt:{sku}", product_id=product.id, quantity=D(on_hand),
                                           source_location_id=base.locations.suppliers.id,
                                           dest_location_id=base.warehouse.stock.id, unit_cost=D(cost)))

    pricelist = Pricelist(name="Contractors")
    session.add(pricelist)
    session.flush()
    session.add_all([
        PricelistRule(pricelist_id=pricelist.id, category_id=cables.id, kind=PricelistRuleKind.discount,
                      percent_discount=D("10")),
        PricelistRule(pricelist_id=pricelist.id, product_id=products[LAMP], min_quantity=D("10"),
                      kind=PricelistRuleKind.fixed, fixed_price=D("45.00")),
        PricelistRule(pricelist_id=pricelist.id, product_id=products[SCARCE], kind=PricelistRuleKind.formula,
                      base="standard_cost", percent_discount=D("-50"), price_round=D("1"),
                      price_surcharge=D("-0.01"), min_margin_percent=D("20")),
    ])

    terms = base.payment_terms
    customers = [
        Customer(code=CUSTOMER, name="Elektro Muster GmbH", segment="contractor", email="orders@muster.test",
                 pricelist_id=pricelist.id, payment_term_id=terms["Net 30"].id, credit_limit=D("5000.00"),
                 backorder_preference=BackorderPreference.ship_available, branch_id=base.branch.id),
        Customer(code=CASH_CUSTOMER, name="Cash & Carry Meier", segment="retailer", email="einkauf@meier.test",
                 payment_term_id=terms["Immediate"].id, credit_limit=D(0),
                 backorder_preference=BackorderPreference.ask),
        Customer(code=TIGHT_CUSTOMER, name="Tight Credit KG", segment="project", email="buero@tight.test",
                 payment_term_id=terms["Net 14"].id, credit_limit=D("1000.00"),
                 backorder_preference=BackorderPreference.ship_complete, branch_id=base.branch.id),
    ]
    session.add_all(customers)
    session.flush()
    ensure_sales_people(session)

    return SalesWorld(
        company_id=base.company.id,
        branch_id=base.branch.id,
        branch_code=base.branch.code,
        warehouse_id=base.warehouse.warehouse.id,
        warehouse_code=base.warehouse.warehouse.code,
        stock_location_id=base.warehouse.stock.id,
        customer_location_id=base.locations.customers.id,
        supplier_location_id=base.locations.suppliers.id,
        category_all_id=base.category.id,
        category_cables_id=cables.id,
        category_lighting_id=lighting.id,
        pricelist_id=pricelist.id,
        customer_id=customers[0].id,
        cash_customer_id=customers[1].id,
        tight_customer_id=customers[2].id,
        products=products,
    )


def build_sales_world_in(engine) -> SalesWorld:
    """build_sales_world in a transaction of its own (committed)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return build_sales_world(session)
