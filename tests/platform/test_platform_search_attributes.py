"""Tradeflow's search attributes: the dev-server flags, and registration on a server that lacks them."""

from __future__ import annotations

import pytest
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.testing import WorkflowEnvironment

from tests.platform.platform_support import temporal_cli_path
from workflows.search_attributes import (
    TRADEFLOW_SEARCH_ATTRIBUTES,
    TRADEFLOW_STATUS,
    cli_type_name,
    dev_server_args,
    ensure_search_attributes,
)

NAMES = [
    "TradeflowKind",
    "TradeflowCustomer",
    "TradeflowStatus",
    "TradeflowAmountBand",
    "TradeflowWarehouse",
    "TradeflowRequester",
    "TradeflowCurrentGroup",
]


async def custom_attributes(client, namespace: str = "default") -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    return dict(listed.custom_attributes)


def test_dev_server_args_register_every_attribute_as_keyword():
    assert [key.name for key in TRADEFLOW_SEARCH_ATTRIBUTES] == NAMES
    expected = []
    for name in NAMES:
        expected += ["--search-attribute", f"{name}=Keyword"]
    assert dev_server_args() == expected


@pytest.mark.parametrize(
    ("value_type", "cli_name"),
    [
        (SearchAttributeIndexedValueType.KEYWORD, "Keyword"),
        (SearchAttributeIndexedValueType.KEYWORD_LIST, "KeywordList"),
        (SearchAttributeIndexedValueType.DATETIME, "Datetime"),
        (SearchAttributeIndexedValueType.INT, "Int"),
        (SearchAttributeIndexedValueType.BOOL, "Bool"),
    ],
)
def test_cli_type_names_match_the_temporal_cli(value_type, cli_name):
    assert cli_type_name(value_type) == cli_name


async def test_the_dev_server_flags_register_them_and_ensure_then_adds_nothing(platform_temporal):
    client = platform_temporal.client
    registered = await custom_attributes(client)
    keyword = int(SearchAttributeIndexedValueType.KEYWORD)
    assert {name: registered.get(name) for name in NAMES} == {name: keyword for name in NAMES}
    assert await ensure_search_attributes(client, client.namespace) == []


async def test_ensure_registers_the_missing_ones_once_and_refuses_a_type_clash():
    # A server started without Tradeflow's attributes: what an external server or compose starts with.
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli_path())
    try:
        client = env.client
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace="default",
                search_attributes={TRADEFLOW_STATUS.name: int(SearchAttributeIndexedValueType.INT)},
            )
        )
        with pytest.raises(RuntimeError, match="TradeflowStatus .* as Int, Tradeflow needs Keyword"):
            await ensure_search_attributes(client, "default")

        others = [key for key in TRADEFLOW_SEARCH_ATTRIBUTES if key is not TRADEFLOW_STATUS]
        assert await ensure_search_attributes(client, "default", others) == sorted(k.name for k in others)
        assert await ensure_search_attributes(client, "default", others) == []
        registered = await custom_attributes(client)
        assert all(registered[k.name] == int(SearchAttributeIndexedValueType.KEYWORD) for k in others)
    finally:
        await env.shutdown()
