"""Tradeflow's custom search attributes: what operators filter on in the Temporal UI.

Workflows upsert these keys; the embedded dev server registers them at start (`dev_server_args`), and an
external server or the compose stack gets them through `ensure_search_attributes`. One list, three users,
so a name is never spelled twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

# What kind of process this is: quote-to-cash, procure-to-pay, return, approval.
TRADEFLOW_KIND = SearchAttributeKey.for_keyword("TradeflowKind")
TRADEFLOW_CUSTOMER = SearchAttributeKey.for_keyword("TradeflowCustomer")
TRADEFLOW_STATUS = SearchAttributeKey.for_keyword("TradeflowStatus")
# A band ("0-1k", "1k-10k", ...) rather than the amount: Keyword filters exactly and carries no float money.
TRADEFLOW_AMOUNT_BAND = SearchAttributeKey.for_keyword("TradeflowAmountBand")
TRADEFLOW_WAREHOUSE = SearchAttributeKey.for_keyword("TradeflowWarehouse")
TRADEFLOW_REQUESTER = SearchAttributeKey.for_keyword("TradeflowRequester")
# The group whose inbox holds the open human task, so an operator can find what waits on whom.
TRADEFLOW_CURRENT_GROUP = SearchAttributeKey.for_keyword("TradeflowCurrentGroup")

TRADEFLOW_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    TRADEFLOW_KIND,
    TRADEFLOW_CUSTOMER,
    TRADEFLOW_STATUS,
    TRADEFLOW_AMOUNT_BAND,
    TRADEFLOW_WAREHOUSE,
    TRADEFLOW_REQUESTER,
    TRADEFLOW_CURRENT_GROUP,
)


AMOUNT_BANDS: tuple[tuple[int, str], ...] = ((1_000, "0-1k"), (10_000, "1k-10k"), (50_000, "10k-50k"),
                                            (250_000, "50k-250k"))


def amount_band(amount) -> str:
    """The band an amount falls in, for TradeflowAmountBand (pure: usable inside workflows)."""
    for upper, band in AMOUNT_BANDS:
        if amount < upper:
            return band
    return "250k+"


def cli_type_name(value_type: SearchAttributeIndexedValueType) -> str:
    """The type as the `temporal` CLI spells it: KEYWORD_LIST -> KeywordList, DATETIME -> Datetime."""
    return "".join(part.capitalize() for part in value_type.name.split("_"))


def dev_server_args(keys: Sequence[SearchAttributeKey] = TRADEFLOW_SEARCH_ATTRIBUTES) -> list[str]:
    """`--search-attribute Name=Type` pairs for `temporal server start-dev`."""
    args: list[str] = []
    for key in keys:
        args += ["--search-attribute", f"{key.name}={cli_type_name(key.indexed_value_type)}"]
    return args


async def ensure_search_attributes(
    client: Client,
    namespace: str,
    keys: Sequence[SearchAttributeKey] = TRADEFLOW_SEARCH_ATTRIBUTES,
) -> list[str]:
    """Register the keys the namespace lacks; returns the names added (empty when all were there).

    A key already registered with another type is an operator error we must not paper over: it raises.
    """
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    existing = dict(listed.custom_attributes)
    missing: dict[str, int] = {}
    for key in keys:
        wanted = int(key.indexed_value_type)
        if key.name not in existing:
            missing[key.name] = wanted
        elif existing[key.name] != wanted:
            have = SearchAttributeIndexedValueType(existing[key.name])
            raise RuntimeError(
                f"search attribute {key.name} is registered in namespace {namespace!r} as "
                f"{cli_type_name(have)}, Tradeflow needs {cli_type_name(key.indexed_value_type)}"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


async def _main() -> None:
    """`python -m workflows.search_attributes`: register them on the server the settings point at."""
    from config import connect_temporal, load_settings

    settings = load_settings()
    client = await connect_temporal(settings)
    added = await ensure_search_attributes(client, settings.temporal_namespace)
    names = ", ".join(added) if added else "none, all present"
    print(f"Tradeflow search attributes on {settings.temporal_address}/{settings.temporal_namespace}: added {names}")


if __name__ == "__main__":
    import asyncio

    asyncio.run(_main())
