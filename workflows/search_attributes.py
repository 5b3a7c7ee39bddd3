"""Tradeflow's custom search attributes: what operators filter on in the Temporal UI.

Workflows upsert these keys; the embedded dev server registers them at start (`dev_server_args`), and an
external server or the compose stack gets them through `ensure_search_attributes`. One list, three users,
so a name is never spelled twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio import workflow
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

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


class SearchAttributeBoard:
    """What a workflow shows operators in its search attributes, written as few upserts as it can.

    Each upsert is a history event and a visibility write on the server: measured on this machine, about 6-10 ms
    of server CPU each, and a straight-through order made 20 of them (a third of the server's extra cost over a
    no-op twin). Lean, the board keeps what was asked within one turn of the workflow's event loop and writes
    one upsert, of the keys whose value differs from what the workflow already has (including the attributes it
    was started with), when the workflow next yields.

    Which runs are lean: those started WITH search attributes. Every starter gives them since this board exists
    (the API, the parent for its children: `starting_attributes`), and no run recorded before did, so the start
    event itself tells the two apart, deterministically, for free. (workflow.patched would too, but each patched
    call costs the very thing saved here: the SDK upserts TemporalChangeVersion alongside its marker.) Not lean,
    every `set` upserts at once, exactly as the recorded histories did, so they replay; a run started without
    attributes (a test, a script) also takes that way and is merely chattier.
    """

    def __init__(self, lean: bool, *, flush_on_yield: bool = True) -> None:
        self.lean = lean
        self._flush_on_yield = flush_on_yield
        self._pending: dict[str, SearchAttributeUpdate] = {}
        self._scheduled = False

    @classmethod
    def for_this_run(cls, *, flush_on_yield: bool = True) -> SearchAttributeBoard:
        """Call in the workflow's __init__, before anything is upserted. flush_on_yield=False: the workflow calls
        `flush` itself whenever it starts waiting for the outside world (and before it ends), so the statuses it
        passes through between two such waits (a run of activities) cost nothing."""
        return cls(len(workflow.info().typed_search_attributes) > 0, flush_on_yield=flush_on_yield)

    def set(self, *updates: SearchAttributeUpdate) -> None:
        if not self.lean:
            workflow.upsert_search_attributes(list(updates))
            return
        for update in updates:
            self._pending[update.key.name] = update
        if self._flush_on_yield and not self._scheduled:
            self._scheduled = True
            # Runs when the code that asked yields (an activity, a timer, a wait): one upsert for that turn.
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        current = workflow.info().typed_search_attributes
        changed = [u for u in self._pending.values() if current.get(u.key) != u.value]
        self._pending.clear()
        if changed:
            workflow.upsert_search_attributes(changed)


def starting_attributes(*updates: SearchAttributeUpdate) -> TypedSearchAttributes:
    """The same values as a workflow would set them, for the one who starts it (client or parent): a workflow
    started with its attributes has nothing to upsert at its start."""
    return TypedSearchAttributes([SearchAttributePair(u.key, u.value) for u in updates if u.value is not None])


def order_attributes(*, status: str, amount_total, rep: str, customer_code: str,
                     warehouse_code: str | None) -> tuple[SearchAttributeUpdate, ...]:
    """A quote-to-cash workflow's attributes (pure: the workflow, the API and the demo build them the same way)."""
    return (
        TRADEFLOW_KIND.value_set("quote_to_cash"),
        TRADEFLOW_STATUS.value_set(status),
        TRADEFLOW_AMOUNT_BAND.value_set(amount_band(amount_total)),
        TRADEFLOW_REQUESTER.value_set(rep),
        TRADEFLOW_CUSTOMER.value_set(customer_code),
        # Empty in payloads written before QuoteState carried it: no value rather than a wrong one.
        *([TRADEFLOW_WAREHOUSE.value_set(warehouse_code)] if warehouse_code else []),
    )


def new_order_attributes(*, amount_total, rep: str, customer_code: str,
                         warehouse_code: str | None) -> TypedSearchAttributes:
    """What the one who starts a quote's process gives it: the attributes its first turn would set (a draft,
    waiting for the rep's submission), so that turn has nothing to upsert."""
    return starting_attributes(
        *order_attributes(status="draft", amount_total=amount_total, rep=rep, customer_code=customer_code,
                          warehouse_code=warehouse_code),
        TRADEFLOW_CURRENT_GROUP.value_set("sales"),
    )


def approval_attributes(*, kind: str, requester: str, amount) -> tuple[SearchAttributeUpdate, ...]:
    """An approval chain's attributes while it runs (set by the chain; given at start by a parent that knows)."""
    return (
        TRADEFLOW_KIND.value_set(f"approval:{kind}"),
        TRADEFLOW_REQUESTER.value_set(requester),
        TRADEFLOW_AMOUNT_BAND.value_set(amount_band(amount)),
        TRADEFLOW_STATUS.value_set("pending"),
    )


def shipment_attributes(status: str) -> tuple[SearchAttributeUpdate, ...]:
    """A shipment's attributes while it waits for the warehouse."""
    return (
        TRADEFLOW_KIND.value_set("shipment"),
        TRADEFLOW_STATUS.value_set(status),
        TRADEFLOW_CURRENT_GROUP.value_set("warehouse"),
    )


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
