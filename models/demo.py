"""Demo data: Franconia Electrical Supply GmbH, a regional wholesale distributor of electrical components.

It serves electrical contractors, retailers, project buyers (general contractors, public tenders), OEMs
(machine and panel builders) and facility managers from three branches in northern Bavaria, each with a
warehouse: Nuremberg (NBG, the central warehouse), Würzburg (WUE) and Regensburg (REG).

What `load_demo_data` writes (full scale; `scale` shrinks the volume tables for fast tests):

- the company, 3 branches, 3 warehouses with the standard location tree (`models.setup`) and 544 bins;
- a category tree "All / <top> / <sub>" (10 top categories, about 60 subcategories), each carrying the
  standard stock accounts; units of measure with purchase-unit conversion (m with ring/drum/coil units,
  pc with box/bundle units); taxes; payment terms; the chart of accounts;
- about 5,000 products sampled from product families (cables, conduit, breakers, RCDs, sockets, switches, LED
  lighting, fixings, tools, EV chargers ...): SKU "<family>-<nnnn>", EAN-13 barcode, weight, volume, list
  price, cost, valuation method (about 78% FIFO, 16% AVCO, 6% standard), invoice policy, sales VAT;
- 40 suppliers (4 all-range distributors, 27 manufacturers, 9 specialist distributors) with lead times;
  every product has at least one offer (price per stock unit, minimum quantity and pack multiple in stock
  units, lead time), about 40% a second one, about 15% a quantity break;
- about 300 customers in segments contractor, retailer, project, oem, facility, public, with pricelists,
  payment terms, credit limits (a few cash customers with limit 0), backorder preferences and addresses;
- pricelists with fixed, discount and formula rules, on products, categories and everything, with minimum
  quantities and (public tender) validity dates; formula rules use `base="standard_cost"` or "list_price";
- reorder rules (min, max, multiple = the primary offer's pack, lead time, supplier) per warehouse for about
  half of the stocked products; about 10% of them start below their minimum, so replenishment has work;
- opening stock: quants in bins (and a few in Input and Quarantine), reserved 0, in_date before the
  opening date; incoming valuation layers with remaining quantity and value (FIFO products have up to three
  layers at different costs, AVCO and standard products one at their cost); the layers' quantities per
  product equal the product's quants;
- opening journal entries dated `OPENING_DATE`, each balanced against 3900 Opening balance:
  "demo:opening:stock" (ONE entry: Dr 1200 = the sum of the layers' remaining values), "demo:opening:bank"
  (Dr 1900), "demo:opening:receivables" (Dr 1100 per customer, with customer_id; some customers sit near or
  over their credit limit) and "demo:opening:payables" (Cr 2100 per supplier, with supplier_id);
- a user for every role in `ROLES` (see `DEMO_LOGINS`), all with the password `DEMO_PASSWORD`.

Deterministic: the same seed and scale give the same rows (each part draws from its own `random.Random`
seeded with "<seed>:<part>", and no part iterates a set). The volume tables go in with bulk INSERTs
(executemany / insertmanyvalues), so a full load takes seconds; everything happens in one transaction.
"""

from __future__ import annotations

import argparse
import random
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import Enum

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.accounting import LineSpec, post_entry
from models.common import CENT, BackorderPreference, InvoicePolicy, PricelistRuleKind, ValuationMethod
from models.db import is_postgres, transaction
from models.ledger import JournalEntry, JournalLine
from models.masterdata import (
    Address,
    Branch,
    Company,
    Customer,
    Location,
    PaymentTerm,
    Pricelist,
    PricelistRule,
    Product,
    ProductCategory,
    ReorderRule,
    Supplier,
    SupplierOffer,
    Tax,
    UnitOfMeasure,
    Warehouse,
)
from models.setup import (
    SALES_VAT,
    create_category,
    create_chart_of_accounts,
    create_company,
    create_payment_terms,
    create_standard_taxes,
    create_standard_uoms,
    create_warehouse,
    ensure_global_locations,
    ensure_role_groups,
    grid_bins,
)
from models.stock import Quant, ValuationLayer
from models.users import ROLES, Group, User, UserGroup, hash_password

DEFAULT_SEED = 1907
DEMO_PASSWORD = "tradeflow-demo"
OPENING_DATE = date(2026, 1, 1)
OPENING_AT = datetime(2026, 1, 1, tzinfo=UTC)

COMPANY_NAME = "Franconia Electrical Supply GmbH"
EMAIL_DOMAIN = "franconia-electrical.example"
BRANCHES = (("NBG", "Nuremberg"), ("WUE", "Würzburg"), ("REG", "Regensburg"))


@dataclass(frozen=True)
class WarehousePlan:
    code: str
    branch: str
    name: str
    aisles: str
    racks: int
    levels: int
    stocked_share: float  # share of the catalogue with stock here
    rule_share: float  # share of the stocked products here with a reorder rule


WAREHOUSES = (
    WarehousePlan("NBG", "NBG", "Nuremberg central warehouse", "ABCDEFGH", 10, 4, 0.85, 0.55),
    WarehousePlan("WUE", "WUE", "Würzburg warehouse", "ABCD", 8, 4, 0.55, 0.40),
    WarehousePlan("REG", "REG", "Regensburg warehouse", "ABCD", 6, 4, 0.50, 0.40),
)

FULL_PRODUCTS = 5_000
FULL_CUSTOMERS = 300
FULL_SUPPLIERS = 40

# username, full name, role, branch
DEMO_USERS: tuple[tuple[str, str, str, str], ...] = (
    ("sam.sales", "Sam Schneider", "sales", "NBG"),
    ("sven.sales", "Sven Sommer", "sales", "WUE"),
    ("maria.manager", "Maria Meier", "sales-manager", "NBG"),
    ("max.manager", "Max Maurer", "sales-manager", "REG"),
    ("carla.credit", "Carla Krause", "credit-controller", "NBG"),
    ("paul.purchasing", "Paul Becker", "purchasing", "NBG"),
    ("petra.procurement", "Petra Hoffmann", "purchasing-manager", "NBG"),
    ("walter.warehouse", "Walter Wolf", "warehouse", "NBG"),
    ("quinn.quality", "Quinn Lang", "quality", "NBG"),
    ("fiona.finance", "Fiona Fischer", "finance", "NBG"),
    ("clara.cfo", "Clara Vogel", "cfo", "NBG"),
    ("dana.designer", "Dana Schulz", "process-designer", "NBG"),
    ("admin", "Administrator", "admin", "NBG"),
)
# (username, role) for every demo login; all share DEMO_PASSWORD. Two people hold sales and sales-manager,
# so approval chains can show segregation of duties and delegation.
DEMO_LOGINS: list[tuple[str, str]] = [(username, role) for username, _, role, _ in DEMO_USERS]
assert set(ROLES) <= {role for _, role in DEMO_LOGINS}, "every role needs a demo user"


class DemoDataError(RuntimeError):
    """The demo data cannot be loaded here (for example, the database already holds a company)."""


@dataclass
class DemoSummary:
    seed: int
    scale: float
    seconds: float
    counts: dict[str, int]
    stock_value: Decimal
    receivables: Decimal
    payables: Decimal

    def __str__(self) -> str:
        lines = [f"Tradeflow demo data (seed {self.seed}, scale {self.scale:g}) loaded in {self.seconds:.2f} s"]
        width = max(len(name) for name in self.counts)
        lines += [f"  {name:<{width}}  {count:>7,}" for name, count in self.counts.items()]
        lines.append(f"  {'rows in all':<{width}}  {sum(self.counts.values()):>7,}")
        lines.append(f"  opening stock value {self.stock_value:,.2f} EUR, receivables {self.receivables:,.2f} EUR, "
                     f"payables {self.payables:,.2f} EUR")
        lines.append(f"  logins: {', '.join(u for u, _ in DEMO_LOGINS)} (password {DEMO_PASSWORD!r})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Catalogue, suppliers and customer vocabulary, as data.
#
# Product families expand into SKUs: every combination of a family's brands and axis values is a possible
# product, and the generator samples a share of them. An axis has a price step: each step along its values
# multiplies the cost (a 5x16 mm² cable costs more per metre than a 3x1.5 one). Brands (and, for wiring
# devices, design series "Brand Series") carry a price factor; the first word names the manufacturer.
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[str, ...]
    step: Decimal  # cost multiplier per position along `values`


@dataclass(frozen=True)
class Family:
    key: str  # SKU prefix
    top: str  # key of the top-level category (TOP_CATEGORIES)
    sub: str  # sub-category name
    pattern: str  # str.format pattern over "brand" and the axis names
    brands: tuple[str, ...]
    axes: tuple[Axis, ...]
    cost: Decimal  # purchase cost of the first variant, per stock unit
    uom: str
    purchase_uom: str | None  # None: the axis named "putup" gives it
    weight: Decimal  # kg per stock unit, first variant
    volume: Decimal  # m³ per stock unit, first variant
    quota: int  # relative share of the catalogue

    @property
    def combinations(self) -> int:
        n = len(self.brands)
        for axis in self.axes:
            n *= len(axis.values)
        return n


def _f(key, top, sub, pattern, brands, axes, cost, uom, purchase, weight, volume, quota) -> Family:
    return Family(
        key=key,
        top=top,
        sub=sub,
        pattern=pattern,
        brands=tuple(brands),
        axes=tuple(Axis(name, tuple(values.split("|")), Decimal(step)) for name, values, step in axes),
        cost=Decimal(cost),
        uom=uom,
        purchase_uom=purchase,
        weight=Decimal(weight),
        volume=Decimal(volume),
        quota=quota,
    )


# key -> (display name, markup range in percent of cost for the list price)
TOP_CATEGORIES: dict[str, tuple[str, int, int]] = {
    "cables": ("Cables & wires", 125, 145),
    "conduit": ("Conduit & cable management", 160, 200),
    "protection": ("Circuit protection", 155, 190),
    "automation": ("Automation & control", 150, 180),
    "distribution": ("Distribution & enclosures", 150, 185),
    "devices": ("Wiring devices", 170, 220),
    "lighting": ("Lighting", 170, 230),
    "fixings": ("Fixings & installation material", 190, 260),
    "tools": ("Tools & test equipment", 140, 170),
    "solar": ("Solar & e-mobility", 135, 160),
}

# Brand (or "Brand Series") -> price factor. The first word names the manufacturer brand.
BRAND_FACTORS: dict[str, Decimal] = {
    name: Decimal(f)
    for name, f in (
        ("Nordkabel", "1.00"), ("Rhenocab", "0.95"), ("Frankenleitung", "1.05"), ("Elbekabel", "0.92"),
        ("Protecta", "1.00"), ("Voltaris", "1.12"), ("Ampero", "0.90"), ("Securon", "1.05"),
        ("Schaltwerk Linea", "1.00"), ("Schaltwerk Pure", "1.15"), ("Domotec Q.1", "1.30"),
        ("Arcus Basic", "0.85"), ("Tasta Classic", "1.05"),
        ("Schaltwerk", "1.00"), ("Domotec", "1.25"), ("Arcus", "0.88"), ("Tasta", "1.10"),
        ("Lumora", "1.00"), ("Brightway", "0.85"), ("Luxtera", "1.20"),
        ("Fixtec", "1.00"), ("Rohrflex", "0.95"), ("Montafix", "1.05"),
        ("Werkmeister", "1.00"), ("Isoprofi", "1.15"), ("Messtron", "1.10"),
        ("Cabinex", "1.00"), ("Verteila", "0.93"),
        ("Steuertec", "1.00"), ("Kontakta", "0.92"),
        ("Chargeline", "1.00"), ("Solvolt", "0.95"),
    )
}

CABLE = ("Nordkabel", "Rhenocab", "Frankenleitung", "Elbekabel")
PROT = ("Protecta", "Voltaris", "Ampero", "Securon")
SERIES = ("Schaltwerk Linea", "Schaltwerk Pure", "Domotec Q.1", "Arcus Basic", "Tasta Classic")
LIGHT = ("Lumora", "Brightway", "Luxtera")
FIX = ("Fixtec", "Rohrflex", "Montafix")
TOOLS = ("Werkmeister", "Isoprofi")
ENCL = ("Cabinex", "Verteila")
AUTO = ("Steuertec", "Kontakta")

COLOURS = "pure white|white matt|anthracite matt|aluminium|stainless steel|black matt"
PUTUP = "putup"

FAMILIES: tuple[Family, ...] = (
    # --- Cables & wires (cost per metre) ---------------------------------------------------------------
    _f("NYM", "cables", "Installation cable", "{brand} NYM-J {cores} mm² installation cable, grey, {putup}", CABLE,
       [("cores", "3x1.5|3x2.5|4x1.5|4x2.5|5x1.5|5x2.5|3x4|5x4|3x6|5x6|5x10|5x16|7x1.5", "1.24"),
        (PUTUP, "ring 50 m|ring 100 m|drum 500 m|drum 1000 m", "0.98")],
       "0.62", "m", None, "0.12", "0.00012", 200),
    _f("NYY", "cables", "Power cable", "{brand} NYY-J {cores} mm² power cable, black, {putup}", CABLE,
       [("cores", "3x1.5|3x2.5|5x1.5|5x2.5|5x4|5x6|5x10|5x16|4x25|5x25|4x35|4x50|4x70|4x95|4x120|4x150", "1.27"),
        (PUTUP, "drum 500 m|drum 1000 m", "0.98")],
       "0.95", "m", None, "0.16", "0.00016", 110),
    _f("N2X", "cables", "Power cable", "{brand} N2XH-J {cores} mm² halogen-free power cable, {putup}", CABLE,
       [("cores", "3x1.5|3x2.5|5x1.5|5x2.5|5x4|5x6|5x10|5x16|4x25|5x25", "1.28"),
        (PUTUP, "ring 100 m|drum 500 m|drum 1000 m", "0.98")],
       "1.35", "m", None, "0.15", "0.00015", 70),
    _f("H05", "cables", "Flexible cable", "{brand} H05VV-F {cores} mm² flexible cable, {colour}, {putup}", CABLE,
       [("cores", "2x0.75|3x0.75|2x1.0|3x1.0|4x1.0|3x1.5|4x1.5|5x1.5|3x2.5|5x2.5", "1.18"),
        ("colour", "white|black|grey", "1"), (PUTUP, "ring 50 m|ring 100 m", "0.98")],
       "0.38", "m", None, "0.06", "0.00008", 130),
    _f("H07", "cables", "Flexible cable", "{brand} H07RN-F {cores} mm² rubber cable, {putup}", CABLE,
       [("cores", "3G1.5|3G2.5|5G1.5|5G2.5|5G4|5G6|5G10|5G16|4G25|5G25|4G35|1x50|1x70|1x95", "1.25"),
        (PUTUP, "ring 50 m|ring 100 m|drum 500 m", "0.98")],
       "1.05", "m", None, "0.14", "0.00015", 90),
    _f("HVK", "cables", "Single-core wire", "{brand} H07V-K {size} mm² single-core wire, {colour}, {putup}", CABLE,
       [("size", "1.5|2.5|4|6|10|16|25|35|50", "1.45"),
        ("colour", "black|blue|brown|grey|green-yellow|red|white", "1"), (PUTUP, "ring 100 m", "1")],
       "0.14", "m", None, "0.02", "0.00002", 150),
    _f("HVU", "cables", "Single-core wire", "{brand} H07V-U {size} mm² solid wire, {colour}, {putup}", CABLE,
       [("size", "1.5|2.5|4|6|10", "1.5"), ("colour", "black|blue|brown|grey|green-yellow", "1"),
        (PUTUP, "ring 100 m", "1")],
       "0.12", "m", None, "0.02", "0.00002", 60),
    _f("DAT", "cables", "Data & network cable", "{brand} {kind} installation cable, {jacket}, {putup}", CABLE,
       [("kind", "Cat.6A U/UTP|Cat.6A U/FTP|Cat.6A S/FTP|Cat.7 S/FTP 1000 MHz|Cat.7A S/FTP 1500 MHz"
                 "|Cat.7A S/FTP duplex 1500 MHz", "1.12"),
        ("jacket", "LSZH orange|LSZH white|PVC grey|PE black outdoor", "1.05"),
        (PUTUP, "box 305 m|drum 500 m|drum 1000 m", "0.97")],
       "0.42", "m", None, "0.06", "0.00008", 120),
    _f("TEL", "cables", "Data & network cable", "{brand} J-Y(St)Y {pairs} telecom cable, grey, {putup}", CABLE,
       [("pairs", "2x2x0.6|2x2x0.8|4x2x0.6|4x2x0.8|6x2x0.6|10x2x0.6|10x2x0.8|20x2x0.6|20x2x0.8", "1.22"),
        (PUTUP, "ring 100 m|drum 500 m", "0.98")],
       "0.21", "m", None, "0.04", "0.00005", 30),
    _f("CTL", "cables", "Control cable", "{brand} control cable JZ-500 {cores} mm², grey, {putup}", CABLE,
       [("cores", "2x0.75|3G0.75|4G0.75|5G0.75|7G0.75|12G0.75|3G1|4G1|5G1|7G1|12G1|18G1|25G1|3G1.5|4G1.5"
                  "|5G1.5|7G1.5|12G1.5|18G1.5|25G1.5|3G2.5|4G2.5|5G2.5|7G2.5", "1.1"),
        (PUTUP, "ring 50 m|ring 100 m|drum 500 m", "0.98")],
       "0.45", "m", None, "0.07", "0.00008", 130),
    # --- Conduit & cable management --------------------------------------------------------------------
    _f("FLX", "conduit", "Conduit", "{brand} corrugated conduit {size}, {grade}, {putup}", FIX,
       [("size", "M16|M20|M25|M32|M40|M50", "1.3"),
        ("grade", "light 320 N grey|medium 750 N grey|heavy 1250 N black halogen-free"
                  "|medium 750 N with draw wire", "1.22"),
        (PUTUP, "coil 25 m|coil 50 m", "0.97")],
       "0.18", "m", None, "0.05", "0.0004", 130),
    _f("RIG", "conduit", "Conduit", "{brand} rigid PVC conduit {size}, {colour}, 3 m length", FIX,
       [("size", "M16|M20|M25|M32|M40|M50|M63", "1.33"), ("colour", "light grey|black UV-stable|white", "1.04")],
       "1.10", "pc", "bundle 25", "0.35", "0.0012", 50),
    _f("CFT", "conduit", "Conduit fittings", "{brand} conduit {part} {size}, grey", FIX,
       [("part", "coupler|saddle clip|quick-fix clip|90° bend|junction box 3-way|threaded adapter", "1.12"),
        ("size", "M16|M20|M25|M32|M40|M50", "1.25")],
       "0.12", "pc", "box 50", "0.01", "0.00003", 110),
    _f("TRK", "conduit", "Trunking", "{brand} PVC cable trunking {size} mm, {colour}, 2 m length", FIX,
       [("size", "15x15|20x20|25x25|40x40|40x60|60x60|60x110|80x80|60x130|100x100", "1.28"),
        ("colour", "pure white|light grey|black", "1")],
       "1.50", "pc", "bundle 10", "0.30", "0.0010", 70),
    _f("TRY", "conduit", "Cable trays", "{brand} cable tray {width}x{height} mm, {finish}, 3 m",
       ("Montafix", "Cabinex"),
       [("width", "60|100|150|200|300|400|500|600", "1.17"), ("height", "35|60|85|110", "1.14"),
        ("finish", "pre-galvanised|hot-dip galvanised|stainless steel", "1.4")],
       "14.00", "pc", "pc", "4.0", "0.0150", 110),
    _f("TRA", "conduit", "Cable trays", "{brand} cable tray {part} {width} mm, {finish}", ("Montafix", "Cabinex"),
       [("part", "coupler|end plate|90° bend|T-piece|cross-piece|wall bracket|ceiling hanger|cover 3 m", "1.2"),
        ("width", "60|100|150|200|300|400|500|600", "1.14"),
        ("finish", "pre-galvanised|hot-dip galvanised", "1.3")],
       "3.20", "pc", "box 10", "0.4", "0.0010", 130),
    _f("TIE", "conduit", "Cable ties & clips", "{brand} cable ties {size} mm, {colour} (pack of 100)", FIX,
       [("size", "100x2.5|140x3.6|200x3.6|200x4.8|280x4.8|300x7.6|370x4.8|450x7.6|540x7.6|780x9.0", "1.22"),
        ("colour", "natural|black UV-stable", "1.1")],
       "0.85", "pc", "box 10", "0.08", "0.0002", 50),
    _f("CLP", "conduit", "Cable ties & clips", "{brand} {kind} {size} mm (pack of 100)", FIX,
       [("kind", "nail clip|cable clip with nail|snap-in clip|round cable clamp", "1.15"),
        ("size", "4-8|7-11|10-14|14-18|18-22|22-26|26-30", "1.15")],
       "2.20", "pc", "box 10", "0.15", "0.0004", 60),
    _f("GLD", "conduit", "Cable glands", "{brand} cable gland {thread}, {material}",
       ("Fixtec", "Montafix", "Steuertec"),
       [("thread", "M12|M16|M20|M25|M32|M40|M50|M63", "1.33"),
        ("material", "polyamide light grey|polyamide black|nickel-plated brass|stainless steel V4A|EMC brass", "1.6")],
       "0.32", "pc", "box 100", "0.01", "0.00002", 90),
    _f("LNT", "conduit", "Cable glands", "{brand} lock nut {thread}, {material}", ("Fixtec", "Montafix"),
       [("thread", "M12|M16|M20|M25|M32|M40|M50|M63", "1.3"),
        ("material", "polyamide grey|polyamide black|nickel-plated brass", "1.9")],
       "0.08", "pc", "box 100", "0.005", "0.00001", 40),
    # --- Circuit protection ----------------------------------------------------------------------------
    _f("MCB", "protection", "Miniature circuit breakers", "{brand} MCB {char} {amp}, {poles}, {ka}", PROT,
       [("char", "B|C|D", "1.06"), ("amp", "6 A|10 A|13 A|16 A|20 A|25 A|32 A|40 A|50 A|63 A", "1.03"),
        ("poles", "1P|1P+N|2P|3P|3P+N", "1.5"), ("ka", "6 kA|10 kA", "1.3")],
       "3.20", "pc", "box 10", "0.12", "0.00025", 300),
    _f("RCD", "protection", "Residual current devices", "{brand} RCCB {amp} {ma}, {poles}, type {rtype}", PROT,
       [("amp", "25 A|40 A|63 A|80 A|100 A", "1.12"), ("ma", "30 mA|100 mA|300 mA", "1.02"),
        ("poles", "2P|4P", "1.35"), ("rtype", "A|F|EV|B", "1.9")],
       "18.00", "pc", "pc", "0.25", "0.0005", 160),
    _f("RCB", "protection", "Residual current devices", "{brand} RCBO {char} {amp} 30 mA, 1P+N, type {rtype}, 6 kA",
       PROT,
       [("char", "B|C", "1.04"), ("amp", "6 A|10 A|13 A|16 A|20 A|25 A|32 A|40 A", "1.03"),
        ("rtype", "A|F|A-EV", "1.3")],
       "24.00", "pc", "pc", "0.2", "0.0004", 120),
    _f("SPD", "protection", "Surge protection", "{brand} surge arrester {stype}, {system}", PROT,
       [("stype", "type 3|type 2|type 1+2|type 1", "1.7"), ("system", "1P+N|3P|3P+N|TN-C|TN-S|TT", "1.18")],
       "22.00", "pc", "pc", "0.3", "0.0006", 70),
    _f("NHF", "protection", "Fuses", "{brand} NH fuse-link {size} gG {amp}", PROT,
       [("size", "NH000|NH00|NH1|NH2|NH3", "1.55"),
        ("amp", "16 A|20 A|25 A|35 A|50 A|63 A|80 A|100 A|125 A|160 A", "1.05")],
       "2.10", "pc", "box 5", "0.15", "0.0002", 90),
    _f("NZD", "protection", "Fuses", "{brand} NEOZED D02 fuse-link gG {amp}", PROT,
       [("amp", "2 A|4 A|6 A|10 A|16 A|20 A|25 A|35 A|50 A|63 A", "1.04")],
       "0.55", "pc", "box 10", "0.02", "0.00002", 20),
    _f("ISO", "protection", "Switch disconnectors", "{brand} main switch {amp}, {poles}", PROT,
       [("amp", "32 A|40 A|63 A|80 A|100 A|125 A", "1.12"), ("poles", "1P|2P|3P|4P", "1.3")],
       "8.50", "pc", "pc", "0.2", "0.0004", 60),
    _f("BUS", "protection", "Busbars", "{brand} busbar {poles}, {cs}, {length}", PROT,
       [("poles", "1P|1P+N|3P|3P+N", "1.3"), ("cs", "10 mm²|16 mm²", "1.35"),
        ("length", "12 modules|57 modules (1 m, cuttable)", "3.5")],
       "2.40", "pc", "bundle 10", "0.1", "0.0002", 50),
    # --- Automation & control --------------------------------------------------------------------------
    _f("CON", "automation", "Contactors", "{brand} contactor {amp} AC-3, coil {coil}, {aux}", AUTO,
       [("amp", "9 A|12 A|18 A|25 A|32 A|40 A|50 A|65 A|80 A|95 A", "1.2"),
        ("coil", "24 V AC|230 V AC|24 V DC", "1.05"), ("aux", "1 NO|1 NC", "1")],
       "14.00", "pc", "pc", "0.35", "0.0006", 110),
    _f("ICN", "automation", "Contactors", "{brand} installation contactor {amp}, {contacts}, coil {coil}",
       AUTO + ("Protecta", "Voltaris"),
       [("amp", "20 A|25 A|40 A|63 A", "1.3"), ("contacts", "2 NO|4 NO|2 NO + 2 NC|3 NO + 1 NC|1 NO + 1 NC", "1.08"),
        ("coil", "230 V AC|24 V AC/DC", "1.05")],
       "16.00", "pc", "pc", "0.2", "0.0004", 60),
    _f("MPS", "automation", "Motor protection", "{brand} motor protection switch {range}, {variant}", AUTO,
       [("range", "0.1-0.16 A|0.16-0.25 A|0.25-0.4 A|0.4-0.63 A|0.63-1 A|1-1.6 A|1.6-2.5 A|2.5-4 A|4-6.3 A"
                  "|6.3-10 A|9-12.5 A|12-16 A|16-20 A|20-25 A|24-32 A", "1.03"),
        ("variant", "rotary knob|push buttons|with aux contact 1 NO + 1 NC", "1.2")],
       "28.00", "pc", "pc", "0.3", "0.0006", 70),
    _f("REL", "automation", "Relays & timers", "{brand} {kind}, {voltage}", AUTO + ("Protecta",),
       [("kind", "impulse relay 1 NO 16 A|impulse relay 2 NO 16 A|staircase timer 16 A|multifunction time relay"
                 "|plug-in relay 2 CO with socket|plug-in relay 4 CO with socket|twilight switch with sensor"
                 "|digital time switch 1 channel|digital time switch 2 channels|current monitoring relay", "1.12"),
        ("voltage", "230 V AC|24 V AC/DC|12 V DC", "1.02")],
       "12.00", "pc", "pc", "0.1", "0.0002", 80),
    _f("TBK", "automation", "Terminal blocks", "{brand} DIN-rail terminal block {size} mm², {kind}, {colour}",
       AUTO + ("Fixtec",),
       [("size", "2.5|4|6|10|16|35", "1.3"),
        ("kind", "feed-through|protective earth|N-disconnect|double-level|fuse terminal", "1.45"),
        ("colour", "grey|blue|orange", "1")],
       "0.45", "pc", "box 50", "0.01", "0.00002", 110),
    _f("KNX", "automation", "Building automation", "{brand} KNX {kind}", ("Steuertec", "Domotec"),
       [("kind", "switching actuator 4-fold|switching actuator 8-fold|switching actuator 12-fold"
                 "|dimming actuator 1-fold|dimming actuator 4-fold|blind actuator 4-fold|blind actuator 8-fold"
                 "|power supply 320 mA|power supply 640 mA|IP router|binary input 4-fold|presence detector"
                 "|push-button 1-gang|push-button 2-gang|push-button 4-gang|room temperature controller"
                 "|weather station|line coupler", "1.04")],
       "95.00", "pc", "pc", "0.2", "0.0005", 36),
    # --- Distribution & enclosures ---------------------------------------------------------------------
    _f("DBS", "distribution", "Distribution boards",
       "{brand} surface distribution board {rows}, {ip}, {door}", ENCL + ("Protecta",),
       [("rows", "1-row 12 modules|2-row 24 modules|3-row 36 modules|4-row 48 modules|5-row 60 modules"
                 "|6-row 72 modules", "1.33"),
        ("ip", "IP30|IP41|IP65", "1.25"), ("door", "white door|transparent door", "1.05")],
       "22.00", "pc", "pc", "3.0", "0.0200", 60),
    _f("DBF", "distribution", "Distribution boards", "{brand} flush distribution board {rows}, {wall}, {door}",
       ENCL + ("Protecta",),
       [("rows", "2-row 24 modules|3-row 36 modules|4-row 48 modules|5-row 60 modules|6-row 72 modules", "1.3"),
        ("wall", "solid wall|hollow wall", "1.1"),
        ("door", "white steel door|ventilated door|door with multimedia field", "1.2")],
       "55.00", "pc", "pc", "6.0", "0.0350", 55),
    _f("MTR", "distribution", "Meter cabinets", "{brand} meter cabinet {places}, {variant}", ENCL,
       [("places", "1 meter place|2 meter places|3 meter places|4 meter places|5 meter places", "1.45"),
        ("variant", "with distribution field|with APZ field|with distribution field and APZ"
                    "|surface-mounted complete", "1.15")],
       "180.00", "pc", "pc", "18.0", "0.1500", 35),
    _f("JBX", "distribution", "Junction boxes", "{brand} junction box {size} mm, {variant}", FIX + ENCL,
       [("size", "75x75x37|100x100x50|110x110x66|150x110x70|180x150x77|240x190x90|300x250x120", "1.33"),
        ("variant", "IP55 with grommets|IP65 plain|IP65 with terminals 5x2.5 mm²|IP66 halogen-free"
                    "|IP65 with cable glands", "1.2")],
       "1.80", "pc", "box 10", "0.1", "0.0004", 80),
    _f("FBX", "distribution", "Junction boxes", "{brand} flush-mounted {kind}, {wall}", FIX,
       [("kind", "device box Ø60 x 45|device box Ø60 x 61|deep device box Ø68 x 66|2-gang box|3-gang box"
                 "|junction box Ø70 with lid|electronic box Ø68 x 61", "1.22"),
        ("wall", "solid wall|hollow wall|airtight hollow wall|concrete formwork", "1.25")],
       "0.35", "pc", "box 50", "0.03", "0.0002", 90),
    _f("ENC", "distribution", "Enclosures", "{brand} enclosure {size} mm, {material}, {variant}", ENCL,
       [("size", "200x300x150|300x300x150|300x400x200|400x500x200|500x500x250|600x600x250|600x800x300"
                 "|800x1000x300", "1.3"),
        ("material", "sheet steel RAL 7035|stainless steel|polyester GRP|polycarbonate", "1.25"),
        ("variant", "with mounting plate|with mounting plate and window door", "1.25")],
       "48.00", "pc", "pc", "5.0", "0.0150", 80),
    # --- Wiring devices --------------------------------------------------------------------------------
    _f("SCK", "devices", "Sockets", "{brand} {kind}, {colour}", SERIES,
       [("kind", "Schuko socket|Schuko socket with shutter|Schuko socket with hinged lid IP44"
                 "|Schuko socket 45° angled|Schuko socket with status LED|Schuko socket with USB-A/C charger"
                 "|USB-A/C charging socket|CEE socket insert", "1.22"),
        ("colour", COLOURS, "1.07")],
       "3.20", "pc", "box 10", "0.09", "0.0002", 170),
    _f("SWI", "devices", "Switches", "{brand} {kind}, {colour}", SERIES,
       [("kind", "on/off switch|two-way switch|intermediate switch|double switch|series switch|push button"
                 "|push button with locator light|two-way switch with control light|double push button"
                 "|blind push button", "1.1"),
        ("colour", COLOURS, "1.07")],
       "3.60", "pc", "box 10", "0.08", "0.0002", 200),
    _f("FRM", "devices", "Frames", "{brand} {gang} frame, {colour}", SERIES,
       [("gang", "1-gang|2-gang|3-gang|4-gang|5-gang", "1.55"), ("colour", COLOURS, "1.08")],
       "1.40", "pc", "box 10", "0.03", "0.0001", 100),
    _f("DIM", "devices", "Dimmers", "{brand} {kind}, {colour}", SERIES,
       [("kind", "LED rotary dimmer 3-100 W|LED push dimmer 4-200 W|universal dimmer 20-420 W"
                 "|smart dimmer with app|LED dimmer two-way", "1.3"),
        ("colour", COLOURS, "1.05")],
       "32.00", "pc", "pc", "0.1", "0.0002", 80),
    _f("MDO", "devices", "Data & media outlets", "{brand} {kind}, {colour}", SERIES,
       [("kind", "RJ45 Cat.6A outlet 1-port|RJ45 Cat.6A outlet 2-port|TV/SAT/radio outlet|speaker outlet"
                 "|HDMI outlet|blank cover plate|cable outlet cover", "1.1"),
        ("colour", COLOURS, "1.06")],
       "5.50", "pc", "box 10", "0.06", "0.0002", 100),
    _f("SIP", "devices", "Surface devices IP44", "{brand} surface {kind}, IP44, {colour}",
       ("Arcus", "Tasta", "Schaltwerk"),
       [("kind", "Schuko socket|double Schuko socket|triple Schuko socket|on/off switch|two-way switch"
                 "|push button|junction box", "1.12"),
        ("colour", "grey|white|anthracite", "1.05")],
       "4.10", "pc", "box 10", "0.12", "0.0004", 60),
    _f("MOT", "devices", "Motion detectors", "{brand} {kind}, {colour}", ("Domotec", "Schaltwerk", "Steuertec"),
       [("kind", "motion detector 180° indoor|motion detector 230° outdoor IP55|presence detector 360° ceiling"
                 "|presence detector 360° DALI|flush-mounted motion detector 180°|corridor presence detector",
         "1.2"),
        ("colour", "white|anthracite|silver", "1.03")],
       "24.00", "pc", "pc", "0.15", "0.0004", 50),
    _f("CEE", "devices", "Industrial plugs & sockets", "{brand} CEE {kind} {amp} {poles} 6h, {ip}", ("Tasta", "Arcus"),
       [("kind", "plug|coupler|wall socket|panel socket|phase-inverter plug", "1.22"),
        ("amp", "16 A|32 A|63 A", "1.55"), ("poles", "3-pole 230 V|5-pole 400 V", "1.15"),
        ("ip", "IP44|IP67", "1.3")],
       "3.40", "pc", "box 10", "0.15", "0.0004", 110),
    _f("PLG", "devices", "Plugs & extension leads", "{brand} {kind}, {colour}", ("Arcus", "Tasta"),
       [("kind", "rubber Schuko plug|rubber Schuko coupler|angled Schuko plug|flat plug with cable 2 m"
                 "|3-way extension lead 1.5 m|3-way extension lead 3 m|5-way extension lead 3 m"
                 "|6-way power strip with switch 1.5 m|6-way power strip with surge protection"
                 "|cable reel 25 m H07RN-F|cable reel 40 m H07RN-F|cable reel 50 m H07RN-F", "1.2"),
        ("colour", "black|white|grey", "1")],
       "2.10", "pc", "box 10", "0.1", "0.0003", 60),
    # --- Lighting --------------------------------------------------------------------------------------
    _f("LMP", "lighting", "LED lamps", "{brand} LED lamp {base} {watt}, {cct}, {finish}, {dim}", LIGHT,
       [("base", "E27|E14|GU10|GU5.3|G9|B22", "1"),
        ("watt", "2.2 W|4.9 W|5.5 W|7 W|8.5 W|11 W|13.5 W|18 W", "1.12"),
        ("cct", "2700 K|3000 K|4000 K|6500 K", "1"), ("finish", "clear|frosted", "1"),
        ("dim", "non-dimmable|dimmable", "1.35")],
       "1.35", "pc", "box 10", "0.05", "0.0003", 260),
    _f("TUB", "lighting", "LED tubes", "{brand} LED tube T8 {size}, {cct}, {supply}", LIGHT,
       [("size", "600 mm 9 W|900 mm 14 W|1200 mm 18 W|1500 mm 24 W", "1.15"),
        ("cct", "3000 K|4000 K|6500 K", "1"), ("supply", "single-end|double-end|ballast-compatible", "1.1")],
       "3.20", "pc", "box 25", "0.2", "0.0010", 60),
    _f("PNL", "lighting", "LED panels", "{brand} LED panel {size}, {cct}, {ugr}, {mount}", LIGHT,
       [("size", "300x300 mm 12 W|600x600 mm 30 W|620x620 mm 30 W|1200x300 mm 36 W|1200x600 mm 45 W", "1.2"),
        ("cct", "3000 K|4000 K|6500 K|CCT switchable", "1.06"), ("ugr", "UGR<22|UGR<19", "1.2"),
        ("mount", "recessed|surface frame|suspended", "1.1")],
       "22.00", "pc", "pc", "2.5", "0.0200", 120),
    _f("DWN", "lighting", "Downlights", "{brand} LED downlight {size}, {cct}, {ip}, {style}", LIGHT,
       [("size", "Ø68 mm 5 W|Ø90 mm 7 W|Ø120 mm 10 W|Ø170 mm 15 W|Ø200 mm 20 W|Ø225 mm 25 W", "1.25"),
        ("cct", "3000 K|4000 K|CCT switchable", "1.05"), ("ip", "IP20|IP44|IP65", "1.12"),
        ("style", "fixed white|tiltable white|fixed black", "1.08")],
       "8.50", "pc", "pc", "0.3", "0.0015", 160),
    _f("FLD", "lighting", "Floodlights", "{brand} LED floodlight {watt}, {cct}, {sensor}, {colour}",
       ("Lumora", "Brightway"),
       [("watt", "10 W|20 W|30 W|50 W|100 W|150 W|200 W", "1.42"), ("cct", "3000 K|4000 K|5000 K", "1"),
        ("sensor", "without sensor|with motion sensor", "1.35"), ("colour", "black|white|grey", "1")],
       "6.50", "pc", "pc", "0.5", "0.0020", 100),
    _f("VPL", "lighting", "Vapour-proof luminaires",
       "{brand} LED vapour-proof luminaire {size}, {cct}, {ip}, {variant}", LIGHT,
       [("size", "600 mm 18 W|1200 mm 36 W|1500 mm 48 W", "1.3"), ("cct", "4000 K|6500 K", "1"),
        ("ip", "IP65|IP66", "1.05"), ("variant", "standard|through-wiring|emergency 3 h|with sensor", "1.2")],
       "16.00", "pc", "pc", "1.5", "0.0060", 70),
    _f("EMG", "lighting", "Emergency lighting", "{brand} {kind}, {mode}, {autonomy}, {ip}", ("Lumora", "Luxtera"),
       [("kind", "exit sign single-sided|exit sign double-sided|escape route luminaire|anti-panic luminaire"
                 "|emergency luminaire recessed", "1.12"),
        ("mode", "self-test|central battery DALI", "1.15"), ("autonomy", "1 h|3 h|8 h", "1.2"),
        ("ip", "IP20|IP65", "1.15")],
       "38.00", "pc", "pc", "0.8", "0.0030", 80),
    _f("STR", "lighting", "LED strips & drivers", "{brand} LED strip {volt} {watt}, {cct}, {ip}, 5 m reel", LIGHT,
       [("volt", "12 V|24 V", "1"), ("watt", "4.8 W/m|9.6 W/m|14.4 W/m|19.2 W/m", "1.3"),
        ("cct", "2700 K|3000 K|4000 K|6500 K|RGB|RGBW", "1.08"), ("ip", "IP20|IP54|IP67", "1.2")],
       "9.00", "pc", "pc", "0.2", "0.0006", 100),
    _f("DRV", "lighting", "LED strips & drivers", "{brand} LED driver {volt} {watt}, {ip}", LIGHT,
       [("volt", "12 V|24 V", "1"), ("watt", "20 W|30 W|60 W|100 W|150 W|240 W|320 W", "1.35"),
        ("ip", "IP20|IP67", "1.3")],
       "8.00", "pc", "pc", "0.3", "0.0005", 40),
    _f("HBY", "lighting", "High-bay luminaires", "{brand} LED high-bay {watt}, beam {beam}, {cct}, {control}",
       ("Lumora", "Luxtera"),
       [("watt", "100 W|150 W|200 W|240 W", "1.3"), ("beam", "60°|90°|120°", "1"), ("cct", "4000 K|5000 K", "1"),
        ("control", "on/off|DALI dimmable", "1.2")],
       "62.00", "pc", "pc", "3.5", "0.0120", 50),
    _f("OUT", "lighting", "Outdoor luminaires", "{brand} LED outdoor {kind}, {colour}, {sensor}", LIGHT,
       [("kind", "wall light up/down|wall lantern|bulkhead round|bulkhead oval|bollard 650 mm|spike spot", "1.15"),
        ("colour", "anthracite|black|white|stainless", "1.05"), ("sensor", "without sensor|with motion sensor", "1.3")],
       "17.00", "pc", "pc", "0.8", "0.0040", 70),
    # --- Fixings & installation material ---------------------------------------------------------------
    _f("LVC", "fixings", "Connectors & terminals", "{brand} {kind} ({pack})", ("Fixtec", "Steuertec"),
       [("kind", "lever connector 2-conductor 0.2-4 mm²|lever connector 3-conductor 0.2-4 mm²"
                 "|lever connector 5-conductor 0.2-4 mm²|lever connector 2-conductor 0.5-6 mm²"
                 "|lever connector 3-conductor 0.5-6 mm²|push-in connector 2-conductor 0.5-2.5 mm²"
                 "|push-in connector 3-conductor 0.5-2.5 mm²|push-in connector 4-conductor 0.5-2.5 mm²"
                 "|push-in connector 5-conductor 0.5-2.5 mm²|push-in connector 8-conductor 0.5-2.5 mm²"
                 "|inline splice connector 4 mm²|gel-filled connector IPX8", "1.08"),
        ("pack", "pack of 50|pack of 100", "1.9")],
       "9.50", "pc", "box 10", "0.2", "0.0005", 48),
    _f("SCR", "fixings", "Screws", "{brand} {kind} {size} mm, {finish} (pack of 200)", FIX,
       [("kind", "chipboard screw countersunk TX|chipboard screw pan head TX|hexagon head wood screw"
                 "|window frame screw|drywall screw", "1.05"),
        ("size", "3.5x16|3.5x25|4x20|4x30|4x40|4.5x35|4.5x50|5x40|5x50|5x60|5x80|6x60|6x80|6x100", "1.1"),
        ("finish", "zinc-plated|stainless A2", "2.2")],
       "3.20", "pc", "box 10", "0.5", "0.0005", 180),
    _f("ANC", "fixings", "Wall plugs & anchors", "{brand} {kind} {size} mm (pack of 100)", FIX,
       [("kind", "nylon wall plug|universal plug|cavity anchor|frame fixing with screw|nail plug"
                 "|hammer-set anchor", "1.45"),
        ("size", "5|6|8|10|12|14", "1.33")],
       "2.10", "pc", "box 10", "0.3", "0.0005", 60),
    _f("ROD", "fixings", "Wall plugs & anchors", "{brand} threaded rod {size} x {length}, {finish}", FIX,
       [("size", "M6|M8|M10|M12|M16", "1.4"), ("length", "1 m|2 m|3 m", "1.9"),
        ("finish", "zinc-plated|stainless A2|hot-dip galvanised", "1.6")],
       "0.90", "pc", "bundle 10", "0.2", "0.0001", 45),
    _f("FER", "fixings", "Ferrules & cable lugs", "{brand} {kind} wire-end ferrules {size} mm² (pack of 100)",
       ("Fixtec", "Werkmeister"),
       [("kind", "insulated|uninsulated|twin insulated", "1.2"),
        ("size", "0.5|0.75|1.0|1.5|2.5|4|6|10|16|25|35|50", "1.28")],
       "0.90", "pc", "box 10", "0.05", "0.0001", 50),
    _f("LUG", "fixings", "Ferrules & cable lugs", "{brand} {kind} cable lug {size} mm² {bolt}", ("Fixtec", "Montafix"),
       [("kind", "tubular copper|compression DIN 46235|aluminium-copper", "1.5"),
        ("size", "6|10|16|25|35|50|70|95|120|150|185|240", "1.28"), ("bolt", "M6|M8|M10|M12", "1.05")],
       "0.35", "pc", "box 50", "0.02", "0.00002", 100),
    _f("TAP", "fixings", "Tapes & heat shrink", "{brand} PVC insulating tape {width} x {length}, {colour}", FIX,
       [("width", "15 mm|19 mm|25 mm", "1.2"), ("length", "10 m|20 m|25 m", "1.7"),
        ("colour", "black|blue|brown|grey|green-yellow|red|white|yellow", "1")],
       "0.45", "pc", "box 10", "0.03", "0.0001", 60),
    _f("SHR", "fixings", "Tapes & heat shrink", "{brand} heat-shrink tube {size} mm {ratio}, {colour}, 1 m", FIX,
       [("size", "1.6/0.8|2.4/1.2|3.2/1.6|4.8/2.4|6.4/3.2|9.5/4.8|12.7/6.4|19/9.5|25.4/12.7|38/19|50.8/25.4",
         "1.22"),
        ("ratio", "2:1|3:1 with adhesive", "2.0"), ("colour", "black|red|blue|clear|green-yellow", "1")],
       "0.30", "pc", "box 10", "0.01", "0.00005", 60),
    _f("ERT", "fixings", "Earthing & lightning protection", "{brand} {kind}, {material}", ("Montafix", "Fixtec"),
       [("kind", "earth rod 1.5 m|earth rod coupler|earth rod connection clamp"
                 "|equipotential bonding bar 7 terminals|pipe earthing clamp 1/2-2 in|pipe earthing clamp 1/2-4 in"
                 "|round conductor Ø8 mm 1 m|flat strip 30x3.5 mm 1 m|cross connector|roof conductor holder",
         "1.08"),
        ("material", "galvanised steel|stainless steel V4A|copper", "1.6")],
       "2.40", "pc", "box 10", "0.4", "0.0005", 50),
    # --- Tools & test equipment ------------------------------------------------------------------------
    _f("HND", "tools", "Hand tools VDE", "{brand} VDE {kind}, {variant}", TOOLS,
       [("kind", "combination pliers|diagonal cutters|long-nose pliers|wire stripping pliers|cable shears"
                 "|water pump pliers|slotted screwdriver|Phillips screwdriver|Pozidriv screwdriver"
                 "|Torx screwdriver|cable knife", "1.06"),
        ("variant", "standard|slim|2-component handle", "1.15")],
       "8.50", "pc", "pc", "0.2", "0.0004", 66),
    _f("SET", "tools", "Hand tools VDE", "{brand} {kind}", TOOLS,
       [("kind", "VDE screwdriver set 6 pcs|VDE screwdriver set 7 pcs slim|VDE pliers set 3 pcs"
                 "|electrician's tool bag 18 pcs|electrician's tool case 25 pcs|electrician's rucksack 26 pcs"
                 "|torque screwdriver set", "1.5")],
       "28.00", "pc", "pc", "1.5", "0.0060", 14),
    _f("CRM", "tools", "Crimping & stripping", "{brand} {kind}", TOOLS,
       [("kind", "ferrule crimping pliers 0.08-10 mm²|ferrule crimping pliers 0.08-16 mm²"
                 "|crimping pliers for insulated terminals|cable lug crimping tool 6-50 mm²"
                 "|hydraulic crimping tool 16-300 mm²|cordless hydraulic crimping tool"
                 "|automatic wire stripper 0.2-6 mm²|cable sheath stripper 4-28 mm|coax stripper"
                 "|RJ45 crimping tool|ratchet cable cutter 52 mm", "1.3")],
       "18.00", "pc", "pc", "0.5", "0.0010", 22),
    _f("TST", "tools", "Test equipment", "{brand} {kind}, {variant}", ("Messtron", "Isoprofi"),
       [("kind", "two-pole voltage tester|non-contact voltage detector|digital multimeter CAT IV|clamp meter AC/DC"
                 "|installation tester VDE 0100|insulation tester 1 kV|socket tester with RCD test"
                 "|earth resistance tester|cable locator|thermal imaging camera|phase sequence indicator"
                 "|network cable tester", "1.26"),
        ("variant", "basic|professional|kit with case", "1.25")],
       "14.00", "pc", "pc", "0.4", "0.0015", 60),
    _f("PWR", "tools", "Power tools", "{brand} {kind}, {kit}", TOOLS,
       [("kind", "cordless drill driver 18 V|cordless impact driver 18 V|cordless hammer drill SDS-plus 18 V"
                 "|wall chaser 125 mm|angle grinder 125 mm|cordless multi-tool 18 V|cordless jigsaw 18 V"
                 "|cordless cable cutter 18 V", "1.15"),
        ("kit", "body only|kit 2x 4.0 Ah|kit 2x 5.0 Ah with case", "1.45")],
       "65.00", "pc", "pc", "2.0", "0.0100", 48),
    _f("BIT", "tools", "Drill bits & hole saws", "{brand} {kind} {size}", ("Werkmeister", "Fixtec"),
       [("kind", "SDS-plus drill bit|masonry drill bit|HSS metal drill bit|wood drill bit|bi-metal hole saw"
                 "|diamond core bit", "1.5"),
        ("size", "5 mm|6 mm|8 mm|10 mm|12 mm|14 mm|16 mm|20 mm|25 mm|35 mm|68 mm|82 mm", "1.15")],
       "1.80", "pc", "box 10", "0.05", "0.0001", 110),
    _f("PUL", "tools", "Cable pulling", "{brand} {kind}", TOOLS,
       [("kind", "draw wire 10 m|draw wire 15 m|draw wire 20 m|draw wire 30 m|fibreglass rod set 10 m"
                 "|fibreglass rod set 20 m|cable pulling gel 1 l|cable roller|cable drum stand", "1.15")],
       "12.00", "pc", "pc", "1.0", "0.0040", 18),
    # --- Solar & e-mobility ----------------------------------------------------------------------------
    _f("PVC", "solar", "Solar cable", "{brand} H1Z2Z2-K {size} mm² solar cable, {colour}, {putup}",
       ("Solvolt", "Nordkabel"),
       [("size", "4|6|10|16", "1.45"), ("colour", "black|red|blue", "1"), (PUTUP, "ring 100 m|drum 500 m", "0.97")],
       "0.55", "m", None, "0.06", "0.00007", 40),
    _f("EVW", "solar", "EV charging", "{brand} wallbox {power}, {connector}, {feature}", ("Chargeline", "Voltaris"),
       [("power", "11 kW|22 kW", "1.15"), ("connector", "type 2 socket|type 2 cable 5 m|type 2 cable 7.5 m", "1.1"),
        ("feature", "basic|smart with app|OCPP with MID meter|OCPP calibration-law compliant", "1.3")],
       "320.00", "pc", "pc", "5.0", "0.0250", 48),
    _f("EVA", "solar", "EV charging", "{brand} {kind}", ("Chargeline", "Voltaris"),
       [("kind", "charging cable type 2 to type 2 11 kW 5 m|charging cable type 2 to type 2 22 kW 7.5 m"
                 "|wallbox pedestal single|wallbox pedestal double|cable holder|RFID cards (pack of 10)"
                 "|DC leakage RCD module", "1.3")],
       "25.00", "pc", "pc", "1.0", "0.0050", 14),
    _f("PVA", "solar", "Solar accessories", "{brand} {kind}", ("Solvolt", "Securon"),
       [("kind", "MC4-compatible connector pair 4-6 mm²|MC4-compatible Y-branch|DC isolator 1000 V 32 A"
                 "|PV surge arrester type 2 1000 V|PV generator junction box 2 strings"
                 "|crimping tool for solar connectors|solar cable clips (pack of 100)|DC string fuse 15 A", "1.3")],
       "3.50", "pc", "pc", "0.1", "0.0002", 16),
)


@dataclass(frozen=True)
class SupplierProfile:
    name: str
    brands: tuple[str, ...]  # manufacturer of these brands (first words of BRAND_FACTORS keys)
    tops: tuple[str, ...]  # distributor for these top categories ("*" = all)
    city: str
    postcode: str
    country: str
    lead_days: tuple[int, int]
    payment_term: str


def _s(name, brands="", tops="", city="", postcode="", country="DE", lead=(7, 14), term="Net 30"):
    return SupplierProfile(name, tuple(brands.split()), tuple(tops.split()), city, postcode, country, lead, term)


# Ordered so that any prefix has full coverage: four all-range distributors first.
SUPPLIERS: tuple[SupplierProfile, ...] = (
    _s("Elektro-Union Süd eG", tops="*", city="Nürnberg", postcode="90431", lead=(1, 2)),
    _s("Großhandel Bayern Elektro GmbH", tops="*", city="München", postcode="81379", lead=(1, 3)),
    _s("Mitteldeutsche Elektrogroßhandlung GmbH", tops="*", city="Erfurt", postcode="99091", lead=(2, 3),
       term="Net 45"),
    _s("EuroVolt Distribution s.r.o.", tops="*", city="Plzeň", postcode="30100", country="CZ", lead=(3, 5)),
    _s("Nordkabel GmbH", brands="Nordkabel", city="Hamburg", postcode="21079", lead=(7, 14), term="Net 45"),
    _s("Protecta Schaltgeräte GmbH", brands="Protecta", city="Stuttgart", postcode="70565", lead=(5, 10)),
    _s("Lumora Lighting GmbH", brands="Lumora", city="Dortmund", postcode="44145", lead=(7, 14)),
    _s("Schaltwerk Elektro GmbH & Co. KG", brands="Schaltwerk", city="Lüdenscheid", postcode="58507", lead=(5, 12)),
    _s("Fixtec Befestigungstechnik GmbH", brands="Fixtec", city="Waldachtal", postcode="72178", lead=(4, 8)),
    _s("Kabel-Express Logistik GmbH", tops="cables solar", city="Bamberg", postcode="96052", lead=(1, 2)),
    _s("Werkmeister Werkzeuge GmbH", brands="Werkmeister", city="Wuppertal", postcode="42283", lead=(5, 10)),
    _s("Steuertec Automation GmbH", brands="Steuertec", city="Erlangen", postcode="91058", lead=(7, 15),
       term="Net 45"),
    _s("Cabinex Gehäusetechnik GmbH", brands="Cabinex", city="Herborn", postcode="35745", lead=(10, 21)),
    _s("Rhenocab Kabelwerke AG", brands="Rhenocab", city="Köln", postcode="51063", lead=(7, 14), term="Net 60"),
    _s("Voltaris Electric GmbH", brands="Voltaris", city="Regensburg", postcode="93055", lead=(5, 10)),
    _s("Brightway Lighting Sp. z o.o.", brands="Brightway", city="Wrocław", postcode="50-001", country="PL",
       lead=(12, 25)),
    _s("LichtDirekt Handels GmbH", tops="lighting", city="Fürth", postcode="90763", lead=(1, 3)),
    _s("Domotec Gebäudesystemtechnik GmbH", brands="Domotec", city="Schalksmühle", postcode="58579", lead=(7, 14)),
    _s("Rohrflex Kunststofftechnik GmbH", brands="Rohrflex", city="Heilbronn", postcode="74078", lead=(5, 10)),
    _s("Messtron Messtechnik GmbH", brands="Messtron", city="Nürnberg", postcode="90411", lead=(5, 12)),
    _s("Schaltgeräte Handel Ost GmbH", tops="protection automation", city="Dresden", postcode="01139", lead=(2, 4)),
    _s("Frankenleitung Kabel GmbH", brands="Frankenleitung", city="Schwabach", postcode="91126", lead=(5, 10)),
    _s("Ampero Components s.r.o.", brands="Ampero", city="Brno", postcode="60200", country="CZ", lead=(10, 20)),
    _s("Luxtera Illuminazione S.r.l.", brands="Luxtera", city="Treviso", postcode="31100", country="IT",
       lead=(14, 28), term="Net 60"),
    _s("Arcus Elektromaterial GmbH", brands="Arcus", city="Linz", postcode="4020", country="AT", lead=(7, 14)),
    _s("Montafix Systeme GmbH", brands="Montafix", city="Würzburg", postcode="97076", lead=(5, 10)),
    _s("Fix & Befestigung Vertrieb GmbH", tops="fixings conduit", city="Ingolstadt", postcode="85055", lead=(1, 3)),
    _s("Isoprofi Tools GmbH", brands="Isoprofi", city="Remscheid", postcode="42853", lead=(7, 14)),
    _s("Kontakta Relais GmbH", brands="Kontakta", city="Chemnitz", postcode="09120", lead=(7, 14)),
    _s("Verteila Verteilersysteme GmbH", brands="Verteila", city="Blomberg", postcode="32825", lead=(10, 18)),
    _s("Elbekabel GmbH", brands="Elbekabel", city="Magdeburg", postcode="39126", lead=(7, 14)),
    _s("Securon Überspannungsschutz GmbH", brands="Securon", city="Neumarkt i.d. OPf.", postcode="92318",
       lead=(5, 10)),
    _s("Tasta Installationstechnik GmbH", brands="Tasta", city="Arnsberg", postcode="59759", lead=(7, 12)),
    _s("Chargeline E-Mobility GmbH", brands="Chargeline", city="Karlsruhe", postcode="76185", lead=(10, 21),
       term="Net 14"),
    _s("Solvolt Solar Components GmbH", brands="Solvolt", city="Freiburg", postcode="79108", lead=(7, 14)),
    _s("Polkabel Sp. z o.o.", tops="cables", city="Poznań", postcode="60-101", country="PL", lead=(10, 18)),
    _s("Alpen Elektro Vertrieb GmbH", tops="devices lighting", city="Salzburg", postcode="5020", country="AT",
       lead=(4, 7)),
    _s("Luce Italia S.r.l.", tops="lighting", city="Milano", postcode="20121", country="IT", lead=(12, 21),
       term="Net 60"),
    _s("Industrie-Elektro Handel Nord GmbH", tops="automation distribution protection", city="Hannover",
       postcode="30179", lead=(2, 4)),
    _s("Werkzeug Zentrale Franken GmbH", tops="tools fixings", city="Erlangen", postcode="91052", lead=(1, 3)),
)

# City, postcode prefix, phone area code, branch code.
CITIES: tuple[tuple[str, str, str, str], ...] = (
    ("Nürnberg", "904", "0911", "NBG"),
    ("Fürth", "907", "0911", "NBG"),
    ("Erlangen", "910", "09131", "NBG"),
    ("Schwabach", "911", "09122", "NBG"),
    ("Ansbach", "915", "0981", "NBG"),
    ("Bamberg", "960", "0951", "NBG"),
    ("Bayreuth", "954", "0921", "NBG"),
    ("Forchheim", "913", "09191", "NBG"),
    ("Lauf a.d. Pegnitz", "912", "09123", "NBG"),
    ("Würzburg", "970", "0931", "WUE"),
    ("Schweinfurt", "974", "09721", "WUE"),
    ("Kitzingen", "973", "09321", "WUE"),
    ("Aschaffenburg", "637", "06021", "WUE"),
    ("Bad Kissingen", "976", "0971", "WUE"),
    ("Ochsenfurt", "971", "09331", "WUE"),
    ("Regensburg", "930", "0941", "REG"),
    ("Amberg", "922", "09621", "REG"),
    ("Weiden i.d. OPf.", "926", "0961", "REG"),
    ("Neumarkt i.d. OPf.", "923", "09181", "REG"),
    ("Straubing", "943", "09421", "REG"),
    ("Kelheim", "933", "09441", "REG"),
    ("Schwandorf", "924", "09431", "REG"),
)

STREETS = (
    "Hauptstraße", "Bahnhofstraße", "Industriestraße", "Gewerbestraße", "Am Gewerbepark", "Siemensstraße",
    "Daimlerstraße", "Robert-Bosch-Straße", "Dieselstraße", "Raiffeisenstraße", "Lindenstraße", "Schillerstraße",
    "Goethestraße", "Mühlweg", "Am Hafen", "Ringstraße", "Gutenbergstraße", "Max-Planck-Straße",
    "Otto-Hahn-Straße", "Carl-Benz-Straße", "Marktplatz", "Kirchenweg", "Gartenstraße", "Am Bahnhof",
    "Nordring", "Südring", "Rudolf-Diesel-Straße", "Ludwigstraße", "Friedrichstraße", "Am Anger",
)

SURNAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger",
    "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Huber", "Kaiser",
    "Fuchs", "Peters", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Vogel", "Friedrich", "Keller", "Günther",
    "Frank", "Berger", "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht", "Ludwig", "Winkler", "Haas",
    "Seidel", "Sommer", "Brandt", "Dietrich", "Kraus", "Böhm", "Engel", "Pohl", "Horn", "Busch", "Bergmann",
    "Thomas", "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer", "Stark", "Ebert", "Götz", "Dorn", "Reuter",
)

# Segment -> name patterns ({s}, {s2}: surnames; {city}: a city of the region).
CUSTOMER_NAME_PATTERNS: dict[str, tuple[str, ...]] = {
    "contractor": (
        "Elektro {s} GmbH", "{s} Elektrotechnik GmbH", "Elektro-{s} & Sohn", "{s} Elektroinstallationen",
        "{s} & {s2} Elektro GmbH", "Elektrotechnik {s} e.K.", "{s} Gebäudetechnik GmbH", "{s} Haustechnik GmbH",
        "Elektro {s} {city}", "{s} Energie- und Gebäudetechnik",
    ),
    "retailer": (
        "Elektro-Fachhandel {s}", "Licht & Leuchten {s}", "Baumarkt {s} KG", "Hausgeräte & Elektro {s}",
        "Leuchtenhaus {s} {city}", "{s} Elektro-Markt GmbH",
    ),
    "project": (
        "{s} Bau GmbH", "{city} Projektbau GmbH & Co. KG", "{s} & {s2} Generalunternehmer GmbH",
        "Wohnbau {city} GmbH", "ARGE Neubau {city} ({s}/{s2})", "{s} Industriebau GmbH",
    ),
    "oem": (
        "{s} Maschinenbau GmbH", "{s} Schaltschrankbau GmbH", "{s} Anlagentechnik GmbH", "{s} Automation GmbH",
        "{s} Lüftungstechnik GmbH", "{s} Fördertechnik GmbH",
    ),
    "facility": (
        "{s} Facility Services GmbH", "Hausverwaltung {s} {city}", "{s} Gebäudemanagement GmbH",
        "{s} Hausmeisterservice",
    ),
    "public": (
        "Stadtwerke {city}", "Stadt {city} – Hochbauamt", "Landkreis {city} – Liegenschaften",
        "Hochschule {city} – Technischer Dienst", "Klinikum {city} – Haustechnik",
    ),
}

# Segment -> (share of customers, credit limit range in EUR, credit limit step, payment terms to pick from,
#             backorder preferences with weights)
SEGMENTS: dict[str, tuple[float, int, int, int, tuple[str, ...], tuple[tuple[str, int], ...]]] = {
    "contractor": (0.55, 2_500, 40_000, 500, ("Net 14", "Net 30", "Net 30", "Net 30"),
                   (("ship_available", 7), ("ship_complete", 1), ("ask", 2))),
    "retailer": (0.15, 10_000, 60_000, 1_000, ("Net 30", "Net 45"),
                 (("ship_available", 5), ("ask", 3), ("ship_complete", 2))),
    "project": (0.10, 25_000, 250_000, 5_000, ("Net 45", "Net 60"),
                (("ship_complete", 6), ("ask", 3), ("ship_available", 1))),
    "oem": (0.08, 20_000, 150_000, 5_000, ("Net 45", "Net 60"),
            (("ship_available", 6), ("ask", 2), ("ship_complete", 2))),
    "facility": (0.07, 5_000, 30_000, 500, ("Net 14", "Net 30"),
                 (("ship_available", 8), ("ask", 2))),
    "public": (0.05, 50_000, 200_000, 10_000, ("Net 30",),
               (("ship_complete", 5), ("ship_available", 5))),
}


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------

UNIT_COST_Q = Decimal("0.0001")
MILLI = Decimal("0.001")
MICRO = Decimal("0.000001")
# Axes whose price step also means more material: weight and volume scale along them (not along finish,
# colour, features ...).
SIZE_AXES = frozenset({"cores", "size", "rows", "places", "width", "height", "amp", "watt", "length", "gang",
                       "poles", "pairs", "thread", "cs", "range", "power"})
VALUATION_MIX = ((ValuationMethod.fifo, 78), (ValuationMethod.avco, 16), (ValuationMethod.standard, 6))
STOCK_VALUE_TIERS = ((150, 15), (300, 25), (600, 25), (1_200, 20), (2_500, 10), (5_000, 5))
# Extra contractor discount (percentage points) per top category: thin margins on cable, fat on fixings.
CONTRACTOR_CATEGORY_EXTRA = {
    "cables": -3, "conduit": 3, "protection": 3, "automation": 2, "distribution": 2, "devices": 4,
    "lighting": 5, "fixings": 6, "tools": -2, "solar": -2,
}
# Retail partner markup on cost per top category (formula rules).
RETAIL_MARKUP = {
    "cables": 28, "conduit": 45, "protection": 40, "automation": 35, "distribution": 38, "devices": 55,
    "lighting": 60, "fixings": 70, "tools": 35, "solar": 30,
}
TENDER_START, TENDER_END = date(2026, 1, 1), date(2027, 12, 31)
ADVISORY_LOCK_KEY = 7_305_001  # pg_advisory_xact_lock key serialising concurrent ensure_demo_data calls


def _rng(seed: int, part: str) -> random.Random:
    return random.Random(f"{seed}:{part}")


def _scaled(full: int, scale: float, minimum: int) -> int:
    return max(minimum, int(Decimal(full) * Decimal(str(scale)) + Decimal("0.5")))


def _pct(rng: random.Random, lo: int, hi: int) -> Decimal:
    return Decimal(rng.randint(lo, hi)) / 100


def _slug(text_: str) -> str:
    text_ = text_.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    text_ = text_.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue")
    ascii_ = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode()
    out, dash = [], False
    for ch in ascii_.lower():
        if ch.isalnum():
            out.append(ch)
            dash = False
        elif not dash and out:
            out.append("-")
            dash = True
    return "".join(out).strip("-")[:40]


def _ean13(number12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(number12))
    return number12 + str((10 - total % 10) % 10)


def _list_price(value: Decimal) -> Decimal:
    """Cents, and prices from 10 EUR up end in 9 (23.49 rather than 23.44)."""
    price = value.quantize(CENT, ROUND_HALF_UP)
    if price >= 10:
        price = (price / Decimal("0.10")).to_integral_value(ROUND_CEILING) * Decimal("0.10") - CENT
    return max(price, CENT)


def _allocate(total: int) -> list[int]:
    """Products per family: proportional to the quotas, capped by the family's combinations, summing to total."""
    weights = [f.quota for f in FAMILIES]
    caps = [f.combinations for f in FAMILIES]
    wsum = sum(weights)
    alloc = [min(cap, max(1, (2 * total * w + wsum) // (2 * wsum))) for w, cap in zip(weights, caps)]
    order = sorted(range(len(FAMILIES)), key=lambda i: (-weights[i], i))
    diff = total - sum(alloc)
    while diff:
        moved = False
        for i in order:
            if diff > 0 and alloc[i] < caps[i]:
                alloc[i] += 1
                diff -= 1
                moved = True
            elif diff < 0 and alloc[i] > 1:
                alloc[i] -= 1
                diff += 1
                moved = True
            if not diff:
                break
        if not moved:
            break
    return alloc


@dataclass
class _Item:
    """A product being generated, with what later parts need to know about it."""

    sku: str
    name: str
    family: Family
    brand: str
    purchase_uom: str
    cost: Decimal
    list_price: Decimal
    weight: Decimal
    volume: Decimal
    valuation: ValuationMethod
    invoice_policy: InvoicePolicy
    barcode: str
    id: int = 0
    pack: Decimal = Decimal(1)  # the purchase unit in stock units
    primary_supplier: int = 0  # index into the included suppliers
    primary_lead: int = 0
    primary_pack: Decimal = Decimal(1)
    stock: dict[str, Decimal] = field(default_factory=dict)  # warehouse code -> quantity


def _catalogue(seed: int, total: int) -> list[_Item]:
    rng = _rng(seed, "products")
    items: list[_Item] = []
    for family, count in zip(FAMILIES, _allocate(total)):
        radices = [len(family.brands)] + [len(a.values) for a in family.axes]
        lo, hi = TOP_CATEGORIES[family.top][1:]
        for n, index in enumerate(sorted(rng.sample(range(family.combinations), count)), 1):
            digits = []
            for radix in reversed(radices):
                index, digit = divmod(index, radix)
                digits.append(digit)
            digits.reverse()
            brand = family.brands[digits[0]]
            values = {axis.name: axis.values[d] for axis, d in zip(family.axes, digits[1:])}
            factor, size = Decimal(1), Decimal(1)
            for axis, d in zip(family.axes, digits[1:]):
                factor *= axis.step**d
                if axis.name in SIZE_AXES:
                    size *= axis.step**d
            raw = family.cost * BRAND_FACTORS[brand] * factor * _pct(rng, 94, 106)
            cost = max(raw.quantize(CENT if raw >= 1 else UNIT_COST_Q, ROUND_HALF_UP), UNIT_COST_Q)
            items.append(
                _Item(
                    sku=f"{family.key}-{n:04d}",
                    name=family.pattern.format(brand=brand, **values),
                    family=family,
                    brand=brand,
                    purchase_uom=values[PUTUP] if family.purchase_uom is None else family.purchase_uom,
                    cost=cost,
                    list_price=_list_price(cost * _pct(rng, lo, hi)),
                    weight=max((family.weight * size).quantize(MILLI, ROUND_HALF_UP), MILLI),
                    volume=max((family.volume * size).quantize(MICRO, ROUND_HALF_UP), MICRO),
                    valuation=rng.choices([m for m, _ in VALUATION_MIX], [w for _, w in VALUATION_MIX])[0],
                    invoice_policy=InvoicePolicy.ordered if rng.random() < 0.12 else InvoicePolicy.delivered,
                    barcode=_ean13(f"4260{len(items) + 1:08d}"),
                )
            )
    return items


def _bulk(session: Session, model, rows: list[dict], *, ids: bool = False) -> list[int]:
    """INSERT many rows on the session's connection; with `ids`, return the new primary keys in row order.

    SQLite: Core executemany (the ORM's bulk path spends more time sorting parameters than SQLite spends
    storing rows). PostgreSQL: COPY, with ids drawn from the table's sequence first when they are wanted;
    psycopg's executemany sends one INSERT per row and multi-row INSERTs spend their time in psycopg's query
    parser, each several times slower than COPY for this load."""
    if not rows:
        return []
    table = model.__table__
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _copy_into_postgres(connection, table, rows, ids)
    if ids:
        stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        return list(connection.execute(stmt, rows).scalars())
    connection.execute(table.insert(), rows)
    return []


def _copy_into_postgres(connection, table, rows: list[dict], ids: bool) -> list[int]:
    columns = list(rows[0])
    new_ids: list[int] = []
    if ids:
        new_ids = sorted(
            connection.execute(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                {"table": f'"{table.name}"', "n": len(rows)},
            ).scalars()
        )
    names = ", ".join(f'"{c}"' for c in (["id"] if ids else []) + columns)
    dbapi_connection = connection.connection.dbapi_connection
    with dbapi_connection.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for n, row in enumerate(rows):
            # SQLAlchemy stores enum members by name; COPY gets the same text.
            values = [v.name if isinstance(v, Enum) else v for v in (row[c] for c in columns)]
            copy.write_row([new_ids[n], *values] if ids else values)
    return new_ids


def _address(rng: random.Random, owner: dict, kind: str, city: str, postcode: str, country: str = "DE") -> dict:
    return {
        "customer_id": owner.get("customer_id"),
        "supplier_id": owner.get("supplier_id"),
        "kind": kind,
        "street": f"{rng.choice(STREETS)} {rng.randint(1, 180)}",
        "city": city,
        "postcode": postcode,
        "country": country,
    }


@dataclass
class _Loaded:
    stock_value: Decimal
    receivables: Decimal
    payables: Decimal


def _load(session: Session, seed: int, scale: float) -> _Loaded:
    if scale <= 0:
        raise ValueError("scale must be positive")
    n_products = _scaled(FULL_PRODUCTS, scale, 20)
    n_customers = _scaled(FULL_CUSTOMERS, scale, len(SEGMENTS))
    n_suppliers = min(len(SUPPLIERS), _scaled(FULL_SUPPLIERS, scale, 4))

    # --- structure: accounts, taxes, units, terms, groups, company, warehouses --------------------------
    accounts = create_chart_of_accounts(session)
    taxes = create_standard_taxes(session)
    uoms = create_standard_uoms(session)
    terms = create_payment_terms(session)
    groups = ensure_role_groups(session)
    ensure_global_locations(session)
    company, branches = create_company(session, COMPANY_NAME, BRANCHES)
    branch_by_code = {b.code: b for b in branches}
    warehouses = {}
    for plan in WAREHOUSES:
        bins = grid_bins(plan.aisles, plan.racks, plan.levels)
        bins = bins[: _scaled(len(bins), scale, 4)]
        warehouses[plan.code] = create_warehouse(session, branch_by_code[plan.branch], plan.code, plan.name, bins)

    # --- categories ----------------------------------------------------------------------------------
    root = create_category(session, "All", accounts=accounts)
    tops: dict[str, ProductCategory] = {}
    subs: dict[tuple[str, str], ProductCategory] = {}
    for family in FAMILIES:
        if family.top not in tops:
            tops[family.top] = create_category(session, TOP_CATEGORIES[family.top][0], root, accounts=accounts)
        if (family.top, family.sub) not in subs:
            subs[family.top, family.sub] = create_category(session, family.sub, tops[family.top], accounts=accounts)

    # --- products ------------------------------------------------------------------------------------
    items = _catalogue(seed, n_products)
    sales_vat = taxes[SALES_VAT].id
    product_ids = _bulk(
        session,
        Product,
        [
            {
                "sku": it.sku,
                "name": it.name,
                "category_id": subs[it.family.top, it.family.sub].id,
                "uom_id": uoms[it.family.uom].id,
                "purchase_uom_id": uoms[it.purchase_uom].id,
                "barcode": it.barcode,
                "weight_kg": it.weight,
                "volume_m3": it.volume,
                "list_price": it.list_price,
                "standard_cost": it.cost,
                "valuation": it.valuation,
                "invoice_policy": it.invoice_policy,
                "tax_id": sales_vat,
                "active": True,
            }
            for it in items
        ],
        ids=True,
    )
    for it, pid in zip(items, product_ids):
        it.id = pid
        it.pack = uoms[it.purchase_uom].ratio

    # --- suppliers and offers ------------------------------------------------------------------------
    rng = _rng(seed, "suppliers")
    profiles = SUPPLIERS[:n_suppliers]
    supplier_rows, lead_of = [], []
    for i, sp in enumerate(profiles, 1):
        lead = rng.randint(*sp.lead_days)
        lead_of.append(lead)
        supplier_rows.append(
            {
                "code": f"SUP-{i:03d}",
                "name": sp.name,
                "email": f"orders@{_slug(sp.name)}.example",
                "payment_term_id": terms[sp.payment_term].id,
                "default_lead_time_days": lead,
                "active": True,
            }
        )
    supplier_ids = _bulk(session, Supplier, supplier_rows, ids=True)
    _bulk(
        session,
        Address,
        [
            _address(rng, {"supplier_id": sid}, "invoice", sp.city, sp.postcode, sp.country)
            for sid, sp in zip(supplier_ids, profiles)
        ],
    )
    maker_of = {brand: i for i, sp in enumerate(profiles) for brand in sp.brands}
    dealers_of = {
        top: [i for i, sp in enumerate(profiles) if "*" in sp.tops or top in sp.tops] for top in TOP_CATEGORIES
    }

    rng = _rng(seed, "offers")
    offer_rows = []

    def offer(it: _Item, supplier: int, price: Decimal, min_qty: Decimal, lead: int) -> None:
        offer_rows.append(
            {
                "supplier_id": supplier_ids[supplier],
                "product_id": it.id,
                "price": price.quantize(UNIT_COST_Q, ROUND_HALF_UP),
                "min_qty": min_qty,
                "pack_multiple": it.pack,
                "lead_time_days": lead,
            }
        )

    for it in items:
        maker = maker_of.get(it.brand.split()[0])
        dealers = dealers_of[it.family.top]
        primary = maker if maker is not None and rng.random() < 0.8 else rng.choice(dealers)
        is_maker = primary == maker
        lead = min(365, lead_of[primary] + rng.randint(0, 2))
        min_qty = it.pack * (rng.choice((1, 1, 1, 2, 5)) if is_maker else 1)
        offer(it, primary, it.cost, min_qty, lead)
        it.primary_supplier, it.primary_lead, it.primary_pack = primary, lead, it.pack
        others = [s for s in ([maker] if maker is not None else []) + dealers if s != primary]
        if others and rng.random() < 0.4:
            second = rng.choice(others)
            offer(it, second, it.cost * _pct(rng, 103, 112), it.pack, max(1, lead_of[second] - rng.randint(0, 1)))
        if rng.random() < 0.15:
            offer(it, primary, it.cost * _pct(rng, 92, 96), min_qty * rng.choice((5, 10)), lead)
    _bulk(session, SupplierOffer, offer_rows)

    # --- opening stock: quants and valuation layers ---------------------------------------------------
    rng = _rng(seed, "stock")
    quant_rows, layer_rows = [], []
    main = warehouses[WAREHOUSES[0].code]
    stock_value = Decimal(0)
    for it in items:
        total = Decimal(0)
        for plan in WAREHOUSES:
            if rng.random() >= plan.stocked_share:
                continue
            wh = warehouses[plan.code]
            tier = rng.choices([v for v, _ in STOCK_VALUE_TIERS], [w for _, w in STOCK_VALUE_TIERS])[0]
            qty = max(Decimal(1), (Decimal(tier) * _pct(rng, 70, 130) / it.cost).to_integral_value(ROUND_HALF_UP))
            bins = list(wh.bins.values())
            parts = [(rng.choice(bins), qty)]
            if wh is main and qty >= 4 and rng.random() < 0.08:  # overflow into a second bin
                first = (qty * _pct(rng, 50, 80)).to_integral_value(ROUND_HALF_UP)
                parts = [(parts[0][0], first), (rng.choice(bins), qty - first)]
            if wh is main and rng.random() < 0.015:  # some of it still waits in Input or Quarantine
                parts.append((rng.choice((wh.input, wh.quarantine)), max(Decimal(1), (qty / 10).to_integral_value())))
            for location, q in parts:
                quant_rows.append(
                    {
                        "product_id": it.id,
                        "location_id": location.id,
                        "lot_id": None,
                        "quantity": q,
                        "reserved": Decimal(0),
                        "in_date": OPENING_AT - timedelta(days=rng.randint(1, 240), minutes=rng.randint(0, 600)),
                    }
                )
                total += q
            it.stock[plan.code] = qty
        if not total:
            continue
        # Valuation layers: one per receipt still on hand; FIFO products carry older, cheaper layers too.
        n_layers = rng.choice((1, 2, 2, 3)) if it.valuation is ValuationMethod.fifo else 1
        n_layers = min(n_layers, int(total))
        cuts = sorted(rng.sample(range(1, int(total)), n_layers - 1)) if n_layers > 1 else []
        sizes = [Decimal(b - a) for a, b in zip([0, *cuts], [*cuts, int(total)])]
        sizes[-1] += total - sum(sizes)  # keeps any fraction of the total on the newest layer
        for age, q in enumerate(sizes):
            older = n_layers - 1 - age
            unit = it.cost if not older else it.cost * (100 - older * rng.randint(1, 4)) / 100
            unit = max(unit.quantize(UNIT_COST_Q, ROUND_HALF_UP), UNIT_COST_Q)
            value = (q * unit).quantize(CENT, ROUND_HALF_UP)
            stock_value += value
            layer_rows.append(
                {
                    "product_id": it.id,
                    "move_id": None,
                    "quantity": q,
                    "unit_cost": unit,
                    "value": value,
                    "remaining_qty": q,
                    "remaining_value": value,
                    "description": "Opening stock",
                    "created_at": OPENING_AT - timedelta(days=30 + 60 * older, seconds=rng.randint(0, 86_399)),
                }
            )
    _bulk(session, Quant, quant_rows)
    _bulk(session, ValuationLayer, layer_rows)

    # --- reorder rules ---------------------------------------------------------------------------------
    rng = _rng(seed, "reorder")
    rule_rows = []
    for it in items:
        for plan in WAREHOUSES:
            on_hand = it.stock.get(plan.code)
            pack = it.primary_pack
            if on_hand is not None:
                if rng.random() >= plan.rule_share:
                    continue
                share = _pct(rng, 110, 160) if rng.random() < 0.10 else _pct(rng, 30, 80)
                low = max(Decimal(1), (on_hand * share).to_integral_value(ROUND_HALF_UP))
            elif plan is WAREHOUSES[0] and rng.random() < 0.10:  # sold out at the central warehouse
                low = pack * rng.randint(1, 3)
            else:
                continue
            rule_rows.append(
                {
                    "product_id": it.id,
                    "warehouse_id": warehouses[plan.code].warehouse.id,
                    "min_qty": low,
                    "max_qty": low * rng.choice((2, 3, 4)),
                    "qty_multiple": pack,
                    "lead_days": it.primary_lead,
                    "supplier_id": supplier_ids[it.primary_supplier],
                }
            )
    _bulk(session, ReorderRule, rule_rows)

    # --- pricelists ------------------------------------------------------------------------------------
    rng = _rng(seed, "customers")
    segments = _segment_list(rng, n_customers)
    customers = _customers(rng, segments)
    n_keys = _scaled(6, scale, 1)
    key_accounts = sorted(
        (c for c in customers if c["segment"] in ("contractor", "project") and c["credit_limit"] > 0),
        key=lambda c: (-c["credit_limit"], c["code"]),
    )[:n_keys]
    prng = _rng(seed, "pricelists")
    pricelists, rules = _pricelists(prng, items, tops, key_accounts, scale)
    pricelist_ids = dict(zip(pricelists, _bulk(session, Pricelist, [{"name": n, "currency": "EUR"} for n in pricelists],
                                               ids=True)))
    for rule in rules:
        rule["pricelist_id"] = pricelist_ids[rule.pop("pricelist")]
    _bulk(session, PricelistRule, rules)

    # --- customers and addresses -----------------------------------------------------------------------
    for c in customers:
        c["pricelist_id"] = pricelist_ids[c.pop("pricelist")]
        c["payment_term_id"] = terms[c.pop("term")].id
        c["branch_id"] = branch_by_code[c.pop("branch")].id
    city_of = {c["code"]: c.pop("city") for c in customers}
    customer_ids = _bulk(session, Customer, customers, ids=True)
    address_rows = []
    for cid, c in zip(customer_ids, customers):
        city, prefix = city_of[c["code"]]
        owner = {"customer_id": cid}
        address_rows.append(_address(rng, owner, "invoice", city, f"{prefix}{rng.randint(0, 99):02d}"))
        sites = {"contractor": (1, 3), "project": (1, 4)}.get(c["segment"], (1, 1))
        for _ in range(rng.randint(*sites)):
            other_city, other_prefix, _, _ = rng.choice(CITIES) if rng.random() < 0.4 else (city, prefix, "", "")
            address_rows.append(_address(rng, owner, "delivery", other_city, f"{other_prefix}{rng.randint(0, 99):02d}"))
    _bulk(session, Address, address_rows)

    # --- users -----------------------------------------------------------------------------------------
    password_hash = hash_password(DEMO_PASSWORD)  # once: argon2 is slow on purpose
    user_ids = _bulk(
        session,
        User,
        [
            {
                "username": username,
                "full_name": full_name,
                "email": f"{username}@{EMAIL_DOMAIN}",
                "password_hash": password_hash,
                "active": True,
                "branch_id": branch_by_code[branch].id,
                "created_at": OPENING_AT,
            }
            for username, full_name, _, branch in DEMO_USERS
        ],
        ids=True,
    )
    _bulk(
        session,
        UserGroup,
        [{"user_id": uid, "group_id": groups[role].id} for uid, (_, _, role, _) in zip(user_ids, DEMO_USERS)],
    )

    # --- opening balances ------------------------------------------------------------------------------
    rng = _rng(seed, "balances")
    post_entry(
        session,
        source_key="demo:opening:stock",
        entry_date=OPENING_DATE,
        journal="stock",
        memo="Opening stock valuation (sum of the opening valuation layers)",
        lines=[
            LineSpec("1200", debit=stock_value, label="Opening stock"),
            LineSpec("3900", credit=stock_value, label="Opening stock"),
        ],
    )
    bank = Decimal(rng.randint(150, 400) * 1000)
    post_entry(
        session,
        source_key="demo:opening:bank",
        entry_date=OPENING_DATE,
        journal="bank",
        memo="Opening bank balance",
        lines=[LineSpec("1900", debit=bank, label="Opening bank"), LineSpec("3900", credit=bank, label="Opening bank")],
    )
    ar_lines, receivables = [], Decimal(0)
    credit_customers = [(cid, c) for cid, c in zip(customer_ids, customers) if c["credit_limit"]]
    for n, (cid, c) in enumerate(credit_customers):
        limit = c["credit_limit"]
        if rng.random() >= 0.45 and (ar_lines or n < len(credit_customers) - 1):  # at least one open balance
            continue
        share = _pct(rng, 92, 108) if rng.random() < 0.08 else _pct(rng, 5, 60)
        amount = (limit * share + Decimal(rng.randint(0, 99)) / 100).quantize(CENT)
        receivables += amount
        ar_lines.append(LineSpec("1100", debit=amount, customer_id=cid, label=f"Open items {c['code']}"))
    if ar_lines:
        post_entry(
            session,
            source_key="demo:opening:receivables",
            entry_date=OPENING_DATE,
            journal="sales",
            memo="Opening customer balances (open invoices)",
            lines=[*ar_lines, LineSpec("3900", credit=receivables, label="Opening receivables")],
        )
    ap_lines, payables = [], Decimal(0)
    for n, (sid, row) in enumerate(zip(supplier_ids, supplier_rows)):
        if rng.random() >= 0.6 and (ap_lines or n < len(supplier_rows) - 1):
            continue
        amount = Decimal(rng.randint(1_500, 85_000)) + Decimal(rng.randint(0, 99)) / 100
        payables += amount
        ap_lines.append(LineSpec("2100", credit=amount, supplier_id=sid, label=f"Open items {row['code']}"))
    if ap_lines:
        post_entry(
            session,
            source_key="demo:opening:payables",
            entry_date=OPENING_DATE,
            journal="purchase",
            memo="Opening supplier balances (open bills)",
            lines=[LineSpec("3900", debit=payables, label="Opening payables"), *ap_lines],
        )
    return _Loaded(stock_value, receivables, payables)


def _segment_list(rng: random.Random, n: int) -> list[str]:
    """Segments in their shares (largest remainder; each at least once when n allows), in random order."""
    names = list(SEGMENTS)
    exact = [Decimal(str(SEGMENTS[s][0])) * n for s in names]
    counts = [max(1, int(e)) for e in exact]
    by_remainder = sorted(range(len(names)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    k = 0
    while sum(counts) < n:
        counts[by_remainder[k % len(names)]] += 1
        k += 1
    while sum(counts) > n:
        i = max(range(len(names)), key=lambda j: (counts[j], -j))
        counts[i] -= 1
    segments = [s for s, c in zip(names, counts) for _ in range(c)]
    rng.shuffle(segments)
    return segments


def _customers(rng: random.Random, segments: list[str]) -> list[dict]:
    rows, taken = [], set()
    for i, segment in enumerate(segments, 1):
        _, lo, hi, step, term_choices, backorder = SEGMENTS[segment]
        city, prefix, area, branch = rng.choice(CITIES)
        for _ in range(50):
            s, s2 = rng.sample(SURNAMES, 2)
            name = rng.choice(CUSTOMER_NAME_PATTERNS[segment]).format(s=s, s2=s2, city=city)
            if name not in taken:
                break
        else:
            name = f"{name} ({i})"  # a last resort keeps names unique
        taken.add(name)
        cash = segment in ("contractor", "retailer") and rng.random() < 0.06
        limit = Decimal(0) if cash else Decimal(lo + step * rng.randint(0, (hi - lo) // step))
        pricelist = {
            "contractor": rng.choices(("Contractor Bronze", "Contractor Silver", "Contractor Gold"), (50, 35, 15))[0],
            "retailer": "Retail Partner",
            "project": "Project Pricing",
            "oem": "OEM Framework",
            "facility": "Facility Services",
            "public": "Public Sector Tender 2026-2027",
        }[segment]
        rows.append(
            {
                "code": f"CUS-{i:04d}",
                "name": name,
                "segment": segment,
                "email": f"{rng.choice(('einkauf', 'info', 'bestellung', 'office'))}@{_slug(name)}.example",
                "phone": f"+49 {area[1:]} {rng.randint(10_000, 9_999_999)}",
                "pricelist": "Public" if cash else pricelist,
                "term": "Immediate" if cash else rng.choice(term_choices),
                "credit_limit": limit,
                "backorder_preference": BackorderPreference(
                    rng.choices([b for b, _ in backorder], [w for _, w in backorder])[0]
                ),
                "branch": branch,
                "active": True,
                "city": (city, prefix),
            }
        )
    return rows


def _rule(pricelist: str, kind: PricelistRuleKind, **kw) -> dict:
    row = {
        "pricelist": pricelist,
        "product_id": None,
        "category_id": None,
        "min_quantity": Decimal(0),
        "date_start": None,
        "date_end": None,
        "kind": kind,
        "fixed_price": None,
        "percent_discount": None,
        "base": "list_price",
        "price_round": None,
        "price_surcharge": None,
        "min_margin_percent": None,
        "max_margin_percent": None,
    }
    row.update(kw)
    return row


def _fixed(it: _Item, rng: random.Random, lo: int, hi: int) -> Decimal:
    """A negotiated price: list price less lo..hi percent, never below cost plus 5%."""
    price = (it.list_price * (100 - rng.randint(lo, hi)) / 100).quantize(CENT, ROUND_HALF_UP)
    return max(price, (it.cost * Decimal("1.05")).quantize(CENT, ROUND_CEILING))


def _pricelists(rng, items: list[_Item], tops: dict[str, ProductCategory], key_accounts: list[dict], scale: float):
    names: list[str] = ["Public"]
    rules: list[dict] = []
    D, F, X = PricelistRuleKind.discount, PricelistRuleKind.fixed, PricelistRuleKind.formula
    stocked = [it for it in items if it.stock] or items

    def sample(full: int) -> list[_Item]:
        chosen = rng.sample(stocked, min(len(stocked), _scaled(full, scale, 2)))
        return sorted(chosen, key=lambda it: it.id)

    for name, base in (("Contractor Bronze", 6), ("Contractor Silver", 10), ("Contractor Gold", 15)):
        names.append(name)
        rules.append(_rule(name, D, percent_discount=Decimal(base)))
        for top, cat in tops.items():
            pct = Decimal(base + CONTRACTOR_CATEGORY_EXTRA[top])
            rules.append(_rule(name, D, category_id=cat.id, percent_discount=pct))
            if top == "cables" and base >= 10:  # cable by the drum: extra discount from 500 m
                rules.append(_rule(name, D, category_id=cat.id, min_quantity=Decimal(500), percent_discount=pct + 4))
        if base >= 15:
            for it in sample(60):
                rules.append(_rule(name, F, product_id=it.id, fixed_price=_fixed(it, rng, base + 6, base + 12)))

    names.append("Retail Partner")
    for top, cat in tops.items():
        rules.append(_rule("Retail Partner", X, category_id=cat.id, base="standard_cost",
                           percent_discount=Decimal(-RETAIL_MARKUP[top]), price_round=Decimal("0.10"),
                           price_surcharge=Decimal("-0.01"), min_margin_percent=Decimal(20)))

    names.append("Project Pricing")
    rules.append(_rule("Project Pricing", X, base="standard_cost", percent_discount=Decimal(-22),
                       price_round=CENT, min_margin_percent=Decimal(10), max_margin_percent=Decimal(40)))
    rules.append(_rule("Project Pricing", X, base="standard_cost", min_quantity=Decimal(100),
                       percent_discount=Decimal(-16), price_round=CENT, min_margin_percent=Decimal(8)))
    if "cables" in tops:
        rules.append(_rule("Project Pricing", X, category_id=tops["cables"].id, base="standard_cost",
                           percent_discount=Decimal(-12), price_round=CENT, min_margin_percent=Decimal(6)))
        rules.append(_rule("Project Pricing", X, category_id=tops["cables"].id, base="standard_cost",
                           min_quantity=Decimal(1000), percent_discount=Decimal(-8), price_round=CENT,
                           min_margin_percent=Decimal(5)))

    names.append("OEM Framework")
    rules.append(_rule("OEM Framework", D, percent_discount=Decimal(10)))
    oem_tops = {"automation", "protection", "cables", "distribution", "conduit"}
    oem_items = [it for it in stocked if it.family.top in oem_tops] or stocked
    for it in sorted(rng.sample(oem_items, min(len(oem_items), _scaled(150, scale, 2))), key=lambda it: it.id):
        rules.append(_rule("OEM Framework", F, product_id=it.id, fixed_price=_fixed(it, rng, 16, 22)))
        rules.append(_rule("OEM Framework", F, product_id=it.id, min_quantity=it.primary_pack * 10,
                           fixed_price=_fixed(it, rng, 24, 30)))

    names.append("Facility Services")
    rules.append(_rule("Facility Services", D, percent_discount=Decimal(8)))
    for top, pct in (("tools", 4), ("lighting", 12)):
        if top in tops:
            rules.append(_rule("Facility Services", D, category_id=tops[top].id, percent_discount=Decimal(pct)))

    tender = "Public Sector Tender 2026-2027"
    names.append(tender)
    dates = {"date_start": TENDER_START, "date_end": TENDER_END}
    rules.append(_rule(tender, D, percent_discount=Decimal(12), **dates))
    for it in sample(200):
        rules.append(_rule(tender, F, product_id=it.id, fixed_price=_fixed(it, rng, 18, 28), **dates))

    key_tops = list(tops.items())
    for c in key_accounts:
        name = f"Key account {c['code']} {c['name']}"[:120]
        names.append(name)
        c["pricelist"] = name
        rules.append(_rule(name, D, percent_discount=Decimal(rng.randint(18, 24))))
        for top, cat in sorted(rng.sample(key_tops, min(3, len(key_tops))), key=lambda tc: tc[1].id):
            rules.append(_rule(name, D, category_id=cat.id, percent_discount=Decimal(rng.randint(22, 30))))
        for it in sample(80):
            rules.append(_rule(name, F, product_id=it.id, fixed_price=_fixed(it, rng, 25, 35)))
    return names, rules


# ---------------------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------------------

COUNTED = (
    ("branches", Branch), ("warehouses", Warehouse), ("locations", Location), ("uoms", UnitOfMeasure),
    ("taxes", Tax), ("payment_terms", PaymentTerm), ("categories", ProductCategory), ("products", Product),
    ("suppliers", Supplier), ("supplier_offers", SupplierOffer), ("customers", Customer), ("addresses", Address),
    ("pricelists", Pricelist), ("pricelist_rules", PricelistRule), ("reorder_rules", ReorderRule),
    ("quants", Quant), ("valuation_layers", ValuationLayer), ("journal_entries", JournalEntry),
    ("journal_lines", JournalLine), ("users", User), ("groups", Group),
)


def count_rows(session: Session) -> dict[str, int]:
    return {name: session.scalar(select(func.count()).select_from(model)) for name, model in COUNTED}


def _has_company(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Company)))


def _load_into(engine: Engine, seed: int, scale: float, *, if_empty: bool) -> DemoSummary | None:
    started = time.perf_counter()
    with transaction(engine) as session:
        if is_postgres(session):
            # Concurrent starters (api and worker) queue here; SQLite's BEGIN IMMEDIATE already serialises them.
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        if _has_company(session):
            if if_empty:
                return None
            raise DemoDataError("the database already holds a company; demo data loads only into an empty one")
        loaded = _load(session, seed, scale)
        counts = count_rows(session)
    return DemoSummary(seed, scale, time.perf_counter() - started, counts, loaded.stock_value,
                       loaded.receivables, loaded.payables)


def load_demo_data(engine: Engine, seed: int = DEFAULT_SEED, scale: float = 1.0) -> DemoSummary:
    """Load the demo company into an empty database (tables created) in one transaction: all of it or,
    on any error, nothing. Raises DemoDataError when a company exists already."""
    summary = _load_into(engine, seed, scale, if_empty=False)
    assert summary is not None
    return summary


def ensure_demo_data(engine: Engine, seed: int = DEFAULT_SEED, scale: float = 1.0) -> bool:
    """Load the demo data when the company table is empty; True when it loaded. Safe to call from several
    processes at once: one loads, the others wait for its transaction and then find the company."""
    return _load_into(engine, seed, scale, if_empty=True) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: DATABASE_URL from the settings")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = about 5,000 products, 300 customers")
    parser.add_argument("--create-schema", action="store_true",
                        help="create missing tables first (SQLModel metadata; normally Alembic does this)")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when the database holds a company")
    args = parser.parse_args(argv)

    from sqlmodel import SQLModel

    import models  # noqa: F401  (registers every table)
    from models.db import make_engine

    url = args.database_url
    if url is None:
        from config import get_settings

        url = get_settings().database_url
    engine = make_engine(url)
    try:
        if args.create_schema:
            SQLModel.metadata.create_all(engine)
        try:
            summary = _load_into(engine, args.seed, args.scale, if_empty=args.if_empty)
        except DemoDataError as exc:
            print(f"Demo data: {exc}")
            return 1
        if summary is None:
            print("Demo data: the database already holds a company; nothing loaded.")
            return 0
        print(summary)
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
