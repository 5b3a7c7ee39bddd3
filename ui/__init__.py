"""Templates and static assets of the web pages: one Jinja2 environment, with the display filters every page uses.

Templates only present what the routes hand them: no queries, no business rules. Numbers are formatted here, once,
so a price reads the same on every page ("1,234.50") and a quantity never shows trailing zeros ("12.5", "300").
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.templating import Jinja2Templates

UI_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"

PRODUCT_NAME = "Tradeflow"
DASH = "\u2014"  # what an empty cell shows


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    try:
        # str() first: a float goes through its shortest repr, never its binary expansion.
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def format_money(value: Any, places: int = 2) -> str:
    """1234.5 -> "1,234.50"; half up, like the ledger rounds; None -> an em dash."""
    number = _decimal(value)
    if number is None:
        return DASH
    step = Decimal(1).scaleb(-places)
    return f"{number.quantize(step, rounding=ROUND_HALF_UP):,.{places}f}"


UNIT_COST_PLACES = 4


def format_unit_cost(value: Any) -> str:
    """Unit costs and purchase prices with the 4 places they are stored with (0.6125 per m matters), always 4,
    so the figures of a column line up."""
    return format_money(value, UNIT_COST_PLACES)


def format_days(value: Any) -> str:
    if value is None or value == "":
        return DASH
    return f"{value} day" if int(value) == 1 else f"{value} days"


def format_qty(value: Any) -> str:
    """Quantities without trailing zeros: 12.500 -> "12.5", 300.000 -> "300", 1500 -> "1,500"."""
    number = _decimal(value)
    if number is None:
        return DASH
    if number == 0:
        return "0"
    normal = number.normalize()
    # normalize() turns 300 into 3E+2; the f-format with the exponent's places brings the digits back.
    places = max(-normal.as_tuple().exponent, 0)
    return f"{normal:,.{places}f}"


def format_percent(value: Any, places: int = 1) -> str:
    number = _decimal(value)
    if number is None:
        return DASH
    return f"{format_money(number, places)}%"


def format_date(value: Any) -> str:
    """ISO dates (2026-03-01): unambiguous for every reader; datetimes get hours and minutes (UTC as stored)."""
    if value is None or value == "":
        return DASH
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def humanize(value: Any) -> str:
    """An enum or code as words: "ship_available" -> "Ship available"."""
    if value is None or value == "":
        return DASH
    text = str(getattr(value, "value", value)).replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


FLASH_KEY = "flash"


def flash(request: Request, text: str, kind: str = "info") -> None:
    """A message for the next page this browser renders ("success", "info", "warning" or "error"), e.g. after a
    form POST that redirects. Kept in the session cookie, so it survives the redirect and shows once."""
    request.session[FLASH_KEY] = [*request.session.get(FLASH_KEY, []), {"kind": kind, "text": text}]


# How enum values read on the pages, where plain humanizing would not do.
LABELS = {
    "fifo": "FIFO",
    "avco": "AVCO",
    "standard": "Standard cost",
    "ship_available": "Ship what is available, backorder the rest",
    "ship_complete": "Wait and ship each order complete",
    "ask": "Ask the customer",
    "oem": "OEM",
    "ordered": "Ordered quantities",
    "delivered": "Delivered quantities",
    "internal": "Stock",
    "input": "Input",
    "quarantine": "Quarantine",
}


def label(value: Any) -> str:
    """The reader's word for an enum value (`ValuationMethod.fifo` -> "FIFO"), else the value humanized."""
    key = str(getattr(value, "value", value))
    return LABELS.get(key) or humanize(value)


def page_context(request: Request) -> dict[str, Any]:
    """What base.html needs on every page: who is logged in, their roles, the CSRF token for the logout form, and
    the flash messages waiting for this page.

    The user and roles are the ones the auth dependency put on request.state; the token is only made for a
    logged-in user (an anonymous page has no form to protect)."""
    user = getattr(request.state, "user", None)
    roles = frozenset(getattr(request.state, "roles", frozenset()))
    context: dict[str, Any] = {"current_user": user, "current_roles": roles, "is_admin": "admin" in roles}
    if "session" not in request.scope:
        return context
    if request.session.get(FLASH_KEY):
        context["flash_messages"] = request.session.pop(FLASH_KEY)
    if user is not None:
        from api.deps import csrf_token  # imported late: ui must not import the API at module load

        context["csrf_token"] = csrf_token(request)
    return context


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=format_money,
        unit_cost=format_unit_cost,
        days=format_days,
        qty=format_qty,
        percent=format_percent,
        date=format_date,
        humanize=humanize,
        label=label,
    )
    env.globals.update(product_name=PRODUCT_NAME)
    return env


TEMPLATES = Jinja2Templates(env=build_environment(), context_processors=[page_context])
