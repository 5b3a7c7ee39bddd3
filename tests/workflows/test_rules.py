"""Quote-to-cash rules (workflows/rules.py) on worked examples a finance person can check by hand.

Each expected figure is written out with its arithmetic in a comment, so a wrong rule shows up as a wrong number
somebody can recompute on paper.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from workflows.rules import (
    LineAmounts,
    PriceRule,
    credit_check,
    dunning_dates,
    invoiceable_quantity,
    line_amounts,
    order_promised_date,
    promised_date,
    quote_totals,
    rule_price,
    select_price_rule,
    split_shortage,
    uninvoiced_amount,
)

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------- pricelist rule selection

# Product 7 "hex screw M8" sits in category 30 (Screws), under 20 (Fasteners), under 10 (Hardware).
SCREW = 7
SCREW_PATH = (30, 20, 10)
ON = date(2025, 6, 2)

ALL_5 = PriceRule(id=1, kind="discount", percent_discount=D("5"))
FASTENERS_10 = PriceRule(id=2, kind="discount", category_id=20, percent_discount=D("10"))
SCREWS_12 = PriceRule(id=3, kind="discount", category_id=30, percent_discount=D("12"))
SCREW_FIXED = PriceRule(id=4, kind="fixed", product_id=SCREW, fixed_price=D("8.50"))
OTHER_PRODUCT = PriceRule(id=5, kind="fixed", product_id=99, fixed_price=D("1.00"))
EVERY_LEVEL = (OTHER_PRODUCT, ALL_5, FASTENERS_10, SCREWS_12, SCREW_FIXED)


def pick(rules, *, product=SCREW, path=SCREW_PATH, qty=D("1"), on=ON):
    chosen = select_price_rule(rules, product_id=product, category_path=path, quantity=qty, on=on)
    return None if chosen is None else chosen.id


def test_product_rule_beats_category_rule_beats_all_products_rule():
    assert pick(EVERY_LEVEL) == 4
    assert pick((ALL_5, FASTENERS_10, SCREWS_12, OTHER_PRODUCT)) == 3
    assert pick((ALL_5, OTHER_PRODUCT)) == 1
    # A rule for another product never applies; with nothing else the list price is used (None).
    assert pick((OTHER_PRODUCT,)) is None


def test_nearer_category_beats_its_ancestor_whatever_the_rule_order():
    assert pick((FASTENERS_10, SCREWS_12)) == 3
    assert pick((SCREWS_12, FASTENERS_10)) == 3
    # A washer (product 8) in category 31 (Washers) under Fasteners: the Screws rule does not reach it.
    assert pick(EVERY_LEVEL, product=8, path=(31, 20, 10)) == 2
    # A product outside Fasteners gets only the all-products rule.
    assert pick(EVERY_LEVEL, product=9, path=(40, 10)) == 1


def test_rule_naming_product_and_category_needs_both():
    both = PriceRule(id=6, kind="fixed", product_id=SCREW, category_id=30, fixed_price=D("8.00"))
    assert pick((ALL_5, both)) == 6
    # Same product id seen under a category path that does not contain 30 (e.g. recategorised): no match.
    assert pick((ALL_5, both), path=(31, 20, 10)) == 1


TIERS = (
    PriceRule(id=10, kind="fixed", product_id=SCREW, fixed_price=D("10.00")),
    PriceRule(id=11, kind="fixed", product_id=SCREW, min_quantity=D("10"), fixed_price=D("9.50")),
    PriceRule(id=12, kind="fixed", product_id=SCREW, min_quantity=D("100"), fixed_price=D("9.00")),
)


@pytest.mark.parametrize(
    ("qty", "rule_id"),
    [(D("1"), 10), (D("9.999"), 10), (D("10"), 11), (D("99"), 11), (D("100"), 12), (D("500"), 12)],
)
def test_minimum_quantity_tiers_take_the_highest_tier_reached(qty, rule_id):
    assert pick(TIERS, qty=qty) == rule_id


def test_quantity_below_every_tier_falls_back_to_list_price():
    assert pick(TIERS[1:], qty=D("5")) is None


def test_specificity_outranks_quantity_tier():
    # 100 units reach the all-products volume tier, but the product's own rule (min 0) is more specific.
    volume_all = PriceRule(id=13, kind="discount", min_quantity=D("100"), percent_discount=D("20"))
    assert pick((volume_all, TIERS[0]), qty=D("100")) == 10


PROMO = PriceRule(
    id=20, kind="discount", product_id=SCREW, date_start=date(2025, 3, 1), date_end=date(2025, 3, 31),
    percent_discount=D("25"),
)


@pytest.mark.parametrize(
    ("on", "rule_id"),
    [
        (date(2025, 2, 28), 1),  # before the promotion
        (date(2025, 3, 1), 20),  # first day included
        (date(2025, 3, 31), 20),  # last day included
        (date(2025, 4, 1), 1),  # after it
    ],
)
def test_date_range_is_inclusive_at_both_ends(on, rule_id):
    assert pick((ALL_5, PROMO), on=on) == rule_id


def test_open_ended_dates():
    from_april = PriceRule(id=21, kind="discount", product_id=SCREW, date_start=date(2025, 4, 1))
    until_march = PriceRule(id=22, kind="discount", product_id=SCREW, date_end=date(2025, 3, 31))
    assert pick((from_april, until_march), on=date(2020, 1, 1)) == 22
    assert pick((from_april, until_march), on=date(2030, 1, 1)) == 21


def test_ties_go_to_the_lower_id_in_any_order():
    older = PriceRule(id=30, kind="fixed", category_id=30, fixed_price=D("8.80"))
    newer = PriceRule(id=31, kind="fixed", category_id=30, fixed_price=D("8.70"))
    assert pick((newer, older)) == 30
    assert pick((older, newer)) == 30


# ---------------------------------------------------------------------------------------------- rule prices


def test_no_rule_means_list_price():
    assert rule_price(None, list_price=D("19.90"), cost=D("11.00")) == D("19.90")


def test_fixed_rule_ignores_list_price_and_cost():
    assert rule_price(SCREW_FIXED, list_price=D("19.90"), cost=D("11.00")) == D("8.50")


def test_discount_rule_rounds_half_up_to_cents():
    # 19.90 × (1 − 15/100) = 16.915 → 16.92
    rule = PriceRule(id=1, kind="discount", percent_discount=D("15"))
    assert rule_price(rule, list_price=D("19.90"), cost=D("11.00")) == D("16.92")


def test_negative_discount_is_a_markup():
    # discount rule on list: 10.00 × (1 + 5/100) = 10.50
    assert rule_price(
        PriceRule(id=1, kind="discount", percent_discount=D("-5")), list_price=D("10.00"), cost=D("6")
    ) == D("10.50")
    # formula on cost: −100 % doubles the cost (Odoo's "cost plus 100 %"); −25 % adds a quarter.
    cost_plus = PriceRule(id=2, kind="formula", base="standard_cost", percent_discount=D("-100"))
    assert rule_price(cost_plus, list_price=D("99.00"), cost=D("40.00")) == D("80.00")
    cost_plus_25 = dataclasses.replace(cost_plus, percent_discount=D("-25"))
    assert rule_price(cost_plus_25, list_price=D("99.00"), cost=D("40.00")) == D("50.00")


NINETY_NINE = PriceRule(id=40, kind="formula", price_round=D("10"), price_surcharge=D("-0.01"))


@pytest.mark.parametrize(
    ("list_price", "expected"),
    [
        (D("123.40"), D("119.99")),  # 123.40 → nearest 10 = 120 → − 0.01
        (D("126.00"), D("129.99")),  # 126 → 130 → 129.99
        (D("125.00"), D("129.99")),  # 12.5 tens rounds half up to 13 → 130 → 129.99
        (D("4.99"), D("-0.01")),  # 4.99 → 0 → −0.01: rounding to 10 is wrong for cheap items; data's problem
    ],
)
def test_formula_rounds_before_the_surcharge_so_prices_end_in_99(list_price, expected):
    # Surcharge first would give 123.40 − 0.01 = 123.39 → 120.00, which does not end in .99.
    assert rule_price(NINETY_NINE, list_price=list_price, cost=D("1")) == expected


def test_formula_discount_then_rounding_then_surcharge():
    # 86.50 × 0.90 = 77.85 → nearest 10 = 80 → 79.99
    rule = dataclasses.replace(NINETY_NINE, percent_discount=D("10"))
    assert rule_price(rule, list_price=D("86.50"), cost=D("1")) == D("79.99")


COST_RULE = PriceRule(
    id=50, kind="formula", base="standard_cost", min_margin_percent=D("20"), max_margin_percent=D("50")
)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (D("-10"), D("48.00")),  # 40 × 1.10 = 44 is under the floor 40 × 1.20 = 48
        (D("-30"), D("52.00")),  # 40 × 1.30 = 52 is inside [48, 60]
        (D("-100"), D("60.00")),  # 40 × 2 = 80 is over the ceiling 40 × 1.50 = 60
    ],
)
def test_formula_margin_clamp_relative_to_base(percent, expected):
    rule = dataclasses.replace(COST_RULE, percent_discount=percent)
    assert rule_price(rule, list_price=D("999.00"), cost=D("40.00")) == expected


def test_margin_clamp_comes_after_rounding_and_surcharge():
    # 40 × 1.25 = 50 → nearest 10 = 50 → 49.99, then the floor 40 × 1.25 = 50.00 lifts it back.
    rule = PriceRule(
        id=51, kind="formula", base="standard_cost", percent_discount=D("-25"), price_round=D("10"),
        price_surcharge=D("-0.01"), min_margin_percent=D("25"),
    )
    assert rule_price(rule, list_price=D("999.00"), cost=D("40.00")) == D("50.00")


def test_margin_bounds_on_list_price_base_and_crossing_bounds():
    # A 10 % markup on list price, capped at list (max margin 0 %): 100 × 1.10 = 110 → 100.00.
    capped = PriceRule(id=52, kind="formula", percent_discount=D("-10"), max_margin_percent=D("0"))
    assert rule_price(capped, list_price=D("100.00"), cost=D("1")) == D("100.00")
    # Floor 50 % above ceiling 20 %: the ceiling is applied last and wins (40 × 1.20 = 48).
    crossed = dataclasses.replace(COST_RULE, min_margin_percent=D("50"), max_margin_percent=D("20"))
    assert rule_price(crossed, list_price=D("999.00"), cost=D("40.00")) == D("48.00")


def test_bad_rules_and_float_money_are_refused():
    with pytest.raises(ValueError, match="fixed_price"):
        rule_price(PriceRule(id=60, kind="fixed"), list_price=D("1"), cost=D("1"))
    with pytest.raises(ValueError, match="unknown kind"):
        rule_price(PriceRule(id=61, kind="bogus"), list_price=D("1"), cost=D("1"))
    with pytest.raises(ValueError, match="unknown base"):
        rule_price(PriceRule(id=62, kind="formula", base="pricelist"), list_price=D("1"), cost=D("1"))
    with pytest.raises(TypeError, match="list_price must be a Decimal"):
        rule_price(None, list_price=19.9, cost=D("1"))


# ---------------------------------------------------------------------------------------- line and quote totals


def test_line_amounts_with_line_and_order_discount():
    amounts = line_amounts(
        quantity=D("3"), unit_price=D("19.99"), list_price=D("24.90"), line_discount_percent=D("10"),
        order_discount_percent=D("5"), tax_rate=D("19"), unit_cost=D("12.3456"),
    )
    assert amounts == LineAmounts(
        subtotal=D("51.27"),  # 3 × 19.99 = 59.97 × 0.90 = 53.973 × 0.95 = 51.27435 → 51.27
        tax=D("9.74"),  # 51.27 × 19 % = 9.7413 → 9.74
        cost=D("37.04"),  # 3 × 12.3456 = 37.0368 → 37.04
        margin=D("14.23"),  # 51.27 − 37.04
        list_amount=D("74.70"),  # 3 × 24.90
    )


def test_line_and_order_discounts_compound_rather_than_add():
    # 10 % then 10 % is 19 % off (100 × 0.9 × 0.9 = 81), not 20 %.
    amounts = line_amounts(
        quantity=D("1"), unit_price=D("100"), list_price=D("100"), line_discount_percent=D("10"),
        order_discount_percent=D("10"), tax_rate=D("0"), unit_cost=D("0"),
    )
    assert amounts.subtotal == D("81.00")


def test_tax_is_rounded_per_line():
    # Two lines of 0.05 at 10 %: each line's tax is 0.005 → 0.01, so the quote's tax is 0.02 (what the invoice
    # lines print), not 10 % of 0.10 = 0.01.
    line = line_amounts(
        quantity=D("1"), unit_price=D("0.05"), list_price=D("0.05"), line_discount_percent=D("0"),
        order_discount_percent=D("0"), tax_rate=D("10"), unit_cost=D("0.01"),
    )
    assert line.tax == D("0.01")
    totals = quote_totals([line, line])
    assert (totals.untaxed, totals.tax, totals.total) == (D("0.10"), D("0.02"), D("0.12"))


def test_quote_totals_margin_and_effective_discount():
    a = line_amounts(  # 10 × 9.00 = 90.00 untaxed, 18.00 tax, cost 60.00, list 100.00
        quantity=D("10"), unit_price=D("9.00"), list_price=D("10.00"), line_discount_percent=D("0"),
        order_discount_percent=D("0"), tax_rate=D("20"), unit_cost=D("6.00"),
    )
    b = line_amounts(  # 2 × 50.00 × 0.80 = 80.00 untaxed, 8.00 tax, cost 60.00, list 100.00
        quantity=D("2"), unit_price=D("50.00"), list_price=D("50.00"), line_discount_percent=D("20"),
        order_discount_percent=D("0"), tax_rate=D("10"), unit_cost=D("30.00"),
    )
    totals = quote_totals([a, b])
    assert totals.untaxed == D("170.00")
    assert totals.tax == D("26.00")
    assert totals.total == D("196.00")
    assert totals.cost == D("120.00")
    assert totals.margin == D("50.00")
    assert totals.margin_percent == D("29.412")  # 50 / 170 × 100 = 29.41176… → 29.412
    assert totals.discount_percent == D("15.000")  # (200 − 170) / 200 × 100
    assert totals.list_total == D("200.00")


def test_loss_making_and_marked_up_quotes_give_negative_percentages():
    # Sold at 12.00 against list 10.00 and cost 13.00: margin −1.00 = −8.333 %, discount −20 % (a markup).
    line = line_amounts(
        quantity=D("1"), unit_price=D("12.00"), list_price=D("10.00"), line_discount_percent=D("0"),
        order_discount_percent=D("0"), tax_rate=D("0"), unit_cost=D("13.00"),
    )
    totals = quote_totals([line])
    assert totals.margin == D("-1.00")
    assert totals.margin_percent == D("-8.333")
    assert totals.discount_percent == D("-20.000")


def test_empty_and_free_quotes_have_zero_ratios_instead_of_dividing_by_zero():
    empty = quote_totals([])
    assert (empty.untaxed, empty.total, empty.margin_percent, empty.discount_percent) == (0, 0, 0, 0)
    free = line_amounts(
        quantity=D("2"), unit_price=D("0"), list_price=D("5.00"), line_discount_percent=D("0"),
        order_discount_percent=D("0"), tax_rate=D("20"), unit_cost=D("3.00"),
    )
    totals = quote_totals([free])
    assert totals.margin == D("-6.00")
    assert totals.margin_percent == D("0")  # untaxed is 0
    assert totals.discount_percent == D("100.000")  # 10.00 of list given away entirely


# ----------------------------------------------------------------------------------------------------- credit


def exposure_with(this_order, *, posted="4000", uninvoiced="3000", limit="10000"):
    return credit_check(
        posted_receivable=D(posted), uninvoiced_orders=D(uninvoiced), this_order=D(this_order), limit=D(limit)
    )


def test_credit_under_at_and_over_the_limit():
    # ERPNext: exposure = posted receivable + uninvoiced open orders + this order.
    under = exposure_with("2500")
    assert (under.exposure, under.over_limit, under.headroom) == (D("9500"), False, D("500"))
    at = exposure_with("3000")
    assert (at.exposure, at.over_limit, at.headroom) == (D("10000"), False, D("0"))  # equal is allowed
    over = exposure_with("3000.01")
    assert (over.exposure, over.over_limit, over.headroom) == (D("10000.01"), True, D("-0.01"))


def test_no_credit_limit_never_blocks():
    decision = exposure_with("1", posted="750000", uninvoiced="250000", limit="0")
    assert decision.exposure == D("1000001")
    assert decision.over_limit is False


def test_partial_invoicing_counts_each_euro_once():
    # Customer C: order SO1 (5,000.00) is invoiced for 2,000.00, of which 1,500.00 is paid → the ledger holds
    # 500.00. SO1 still adds its uninvoiced 3,000.00, order SO2 (1,200.00) adds all of it. New quote 800.00.
    posted = D("2000.00") - D("1500.00")
    uninvoiced = uninvoiced_amount(D("5000.00"), D("2000.00")) + uninvoiced_amount(D("1200.00"), D("0"))
    assert uninvoiced == D("4200.00")
    decision = credit_check(
        posted_receivable=posted, uninvoiced_orders=uninvoiced, this_order=D("800.00"), limit=D("5000")
    )
    assert decision.exposure == D("5500.00")  # 500 + 4,200 + 800
    assert decision.over_limit is True
    assert decision.headroom == D("-500.00")
    # A further payment of 500.00 clears the ledger: exposure 5,000.00 equals the limit, the hold can go.
    after = credit_check(
        posted_receivable=D("0.00"), uninvoiced_orders=uninvoiced, this_order=D("800.00"), limit=D("5000")
    )
    assert (after.exposure, after.over_limit) == (D("5000.00"), False)


def test_over_invoiced_order_adds_nothing():
    assert uninvoiced_amount(D("1000.00"), D("1000.00")) == D("0")
    assert uninvoiced_amount(D("1000.00"), D("1100.00")) == D("0")


# --------------------------------------------------------------------------------------------- promised dates

TODAY = date(2025, 6, 2)
RECEIPTS = ((date(2025, 6, 20), D("10")), (date(2025, 6, 10), D("10")), (date(2025, 6, 25), D("50")))


def promise(requested, available, incoming=RECEIPTS, lead=14, **kw):
    return promised_date(TODAY, requested=D(requested), available_now=D(available), incoming=incoming,
                         supplier_lead_days=lead, **kw)


def test_stock_on_hand_ships_tomorrow():
    assert promise("10", "12") == date(2025, 6, 3)
    assert promise("12", "12") == date(2025, 6, 3)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("15", date(2025, 6, 11)),  # 5 on hand + 10 on 10 June = 15
        ("25", date(2025, 6, 21)),  # + 10 on 20 June = 25 (receipts taken in date order, not list order)
        ("30", date(2025, 6, 26)),  # + 50 on 25 June = 75
    ],
)
def test_incoming_receipts_are_cumulative_in_date_order(requested, expected):
    assert promise(requested, "5") == expected


def test_supplier_lead_time_when_receipts_fall_short():
    # 5 + 70 incoming = 75 < 100: buy it, 14 days lead + 1 day delivery.
    assert promise("100", "5") == date(2025, 6, 17)
    assert promise("100", "5", lead=None) == date(2025, 6, 3)


def test_overdue_receipt_counts_from_today():
    assert promise("20", "0", incoming=((date(2025, 5, 28), D("20")),)) == date(2025, 6, 3)


def test_security_days_bring_the_promise_forward_but_never_before_delivery_time():
    # Ready 25 June, 2 days delivery, 3 security days: 25 + 2 − 3 = 24 June.
    assert promise("30", "5", delivery_days=2, security_days=3) == date(2025, 6, 24)
    # On hand: 2 June + 2 − 3 would be 1 June; the floor is today + delivery = 4 June.
    assert promise("10", "12", delivery_days=2, security_days=3) == date(2025, 6, 4)


def test_order_promised_date_by_shipping_policy():
    lines = [date(2025, 6, 11), date(2025, 6, 3), date(2025, 6, 26)]
    assert order_promised_date(lines, "direct") == date(2025, 6, 3)
    assert order_promised_date(lines, "one") == date(2025, 6, 26)
    assert order_promised_date([], "one") is None
    with pytest.raises(ValueError, match="shipping policy"):
        order_promised_date(lines, "asap")


# ------------------------------------------------------------------------------------------- shortage split


@pytest.mark.parametrize("preference", ["ship_available", "ship_complete", "ask"])
def test_no_shortage_ships_everything_without_flags(preference):
    split = split_shortage(requested=D("10"), reserved=D("10"), preference=preference)
    assert (split.ship_now, split.backorder, split.wait, split.ask) == (D("10"), D("0"), False, False)


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ("ship_available", (D("6"), D("4"), False, False)),  # ship the 6 there, backorder 4
        ("ship_complete", (D("0"), D("10"), True, False)),  # hold the whole line
        ("ask", (D("6"), D("4"), False, True)),  # ask; ship_available's split is the default answer
    ],
)
def test_shortage_split_per_preference(preference, expected):
    split = split_shortage(requested=D("10"), reserved=D("6"), preference=preference)
    assert (split.ship_now, split.backorder, split.wait, split.ask) == expected
    assert split.ship_now + split.backorder == D("10")


def test_nothing_reserved_and_unknown_preference():
    split = split_shortage(requested=D("10"), reserved=D("0"), preference="ship_available")
    assert (split.ship_now, split.backorder) == (D("0"), D("10"))
    with pytest.raises(ValueError, match="backorder preference"):
        split_shortage(requested=D("10"), reserved=D("6"), preference="never")


# ------------------------------------------------------------------------------------------ invoiceable qty


@pytest.mark.parametrize(
    ("policy", "ordered", "delivered", "invoiced", "cancelled", "expected"),
    [
        ("ordered", "100", "40", "0", "0", "100"),  # invoice the order up front
        ("ordered", "100", "40", "50", "30", "20"),  # 100 − 30 cancelled − 50 invoiced
        ("ordered", "100", "100", "100", "0", "0"),
        ("ordered", "100", "80", "100", "20", "0"),  # cancelled after invoicing: a credit note, not −20
        ("delivered", "100", "40", "0", "0", "40"),  # only what shipped
        ("delivered", "100", "70", "40", "0", "30"),
        ("delivered", "100", "30", "50", "0", "0"),  # never below zero
    ],
)
def test_invoiceable_quantity(policy, ordered, delivered, invoiced, cancelled, expected):
    qty = invoiceable_quantity(
        policy=policy, ordered=D(ordered), delivered=D(delivered), invoiced=D(invoiced), cancelled=D(cancelled)
    )
    assert qty == D(expected)


def test_unknown_invoice_policy_is_refused():
    with pytest.raises(ValueError, match="invoice policy"):
        invoiceable_quantity(policy="milestone", ordered=D(1), delivered=D(0), invoiced=D(0), cancelled=D(0))


# --------------------------------------------------------------------------------------------------- dunning


def test_dunning_dates_default_schedule_crosses_month_end():
    assert dunning_dates(date(2025, 7, 31)) == (date(2025, 8, 7), date(2025, 8, 14), date(2025, 8, 30))


def test_dunning_custom_schedule_and_refusals():
    assert dunning_dates(date(2025, 2, 20), (0, 10)) == (date(2025, 2, 20), date(2025, 3, 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        dunning_dates(date(2025, 2, 20), (14, 7))
    with pytest.raises(ValueError, match="non-negative"):
        dunning_dates(date(2025, 2, 20), (-1, 7))


# -------------------------------------------------------------------------------- fit with the data layer


def test_price_rule_fields_are_pricelist_rule_columns_and_strings_match_the_enums():
    # models/orders.py builds PriceRule from pricelist_rule rows field by field; a renamed column must fail here.
    from models.common import BackorderPreference, InvoicePolicy, PricelistRuleKind
    from models.masterdata import PricelistRule
    from workflows import rules

    columns = set(PricelistRule.model_fields)
    assert {f.name for f in dataclasses.fields(PriceRule)} <= columns
    assert {rules.KIND_FIXED, rules.KIND_DISCOUNT, rules.KIND_FORMULA} == {k.value for k in PricelistRuleKind}
    assert {rules.SHIP_AVAILABLE, rules.SHIP_COMPLETE, rules.ASK} == {p.value for p in BackorderPreference}
    assert {rules.POLICY_ORDERED, rules.POLICY_DELIVERED} == {p.value for p in InvoicePolicy}
    # StrEnum members are accepted where the rules expect strings.
    split = split_shortage(requested=D("2"), reserved=D("1"), preference=BackorderPreference.ask)
    assert split.ask is True


def test_rules_module_imports_nothing_heavy():
    # Workflows call these rules in Temporal's sandbox; importing SQLModel there would leak memory per run.
    heavy = ("sqlmodel", "sqlalchemy", "models", "temporalio")
    code = f"import sys, workflows.rules; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_concession_is_the_discount_off_the_agreed_pricelist_prices():
    from workflows.rules import concession_percent
    assert concession_percent(D("190.00"), D("165.50")) == D("12.895")  # 24.50 / 190
    assert concession_percent(D("100.00"), D("100.00")) == D("0.000")
    assert concession_percent(D("90.00"), D("99.00")) == D("-10.000")  # priced above the pricelist
    assert concession_percent(D("0"), D("0")) == D("0.000")  # a free quote
    assert concession_percent(D("1.00"), D("500.00")) == D("-999")  # floored to the column's range
