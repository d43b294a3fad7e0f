"""Protocol logic: malformed input, unknown channels, quotas, ping, message rate."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from accounts.services.api_keys import api_key_create
from marketdata.streaming.protocol import MAX_MESSAGE_BYTES
from tests.streaming.conftest import closed_with, connected, plan_grant, receive

pytestmark = pytest.mark.django_db(transaction=True)


async def welcomed(key: str):
    comm = await connected(key=key)
    assert (await receive(comm))["type"] == "welcome"
    return comm


async def test_malformed_and_oversized_messages_get_invalid_and_the_connection_stays(acme_key):
    comm = await welcomed(acme_key)
    for bad in (
        "not json",
        "[1, 2]",
        '{"op": "dance"}',
        '{"op": "subscribe", "channels": "trades.sim.BTC-USD"}',
        '{"op": "subscribe", "channels": []}',
        '{"op": "ping", "id": {"x": 1}}',
        '{"op": "ping", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}',
    ):
        await comm.send_to(text_data=bad)
        error = await receive(comm)
        assert error["type"] == "error" and error["code"] == "invalid", bad
    await comm.send_json_to({"op": "ping", "id": 7})
    assert await receive(comm) == {"type": "pong", "id": 7}
    await comm.disconnect()


async def test_oversized_message_error_names_the_limit(acme_key):
    comm = await welcomed(acme_key)
    await comm.send_to(text_data="x" * (MAX_MESSAGE_BYTES + 1))
    error = await receive(comm)
    assert error["details"]["max_bytes"] == MAX_MESSAGE_BYTES
    await comm.disconnect()


async def test_unknown_channels_are_named_and_nothing_is_subscribed(acme_key):
    comm = await welcomed(acme_key)
    channels = ["trades.sim.BTC-USD", "trades.sim.DOGE-USD", "quotes.sim.BTC-USD", "bad"]
    await comm.send_json_to({"op": "subscribe", "channels": channels})
    error = await receive(comm)
    assert error["code"] == "unknown_channel"
    assert error["details"]["channels"] == channels[1:]
    await comm.send_json_to({"op": "unsubscribe", "channels": ["trades.sim.BTC-USD"]})
    assert await receive(comm) == {"type": "unsubscribed", "channels": []}
    await comm.disconnect()


async def test_subscriptions_over_the_plan_get_quota_exceeded_and_the_connection_stays(
    sim_market, alice, acme
):
    await sync_to_async(plan_grant)(acme, ws_subscriptions=2)
    created = await sync_to_async(api_key_create)(organization=acme, created_by=alice)
    comm = await welcomed(created.raw_key)
    await comm.send_json_to(
        {"op": "subscribe", "channels": ["trades.sim.BTC-USD", "trades.sim.ETH-USD"]}
    )
    assert (await receive(comm))["type"] == "subscribed"
    await comm.send_json_to({"op": "subscribe", "channels": ["ticker.sim.BTC-USD"]})
    error = await receive(comm)
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"limit": 2, "subscribed": 2}
    await comm.send_json_to({"op": "ping", "id": "still-here"})
    assert (await receive(comm))["id"] == "still-here"
    await comm.disconnect()


async def test_connections_over_the_plan_are_closed_with_4008_naming_the_limit(
    sim_market, alice, acme
):
    await sync_to_async(plan_grant)(acme, ws_connections=2)
    key = (await sync_to_async(api_key_create)(organization=acme, created_by=alice)).raw_key
    first, second = await welcomed(key), await welcomed(key)
    third = await connected(key=key)
    error = await receive(third)
    assert error["code"] == "quota_exceeded" and error["details"] == {"limit": 2}
    assert await closed_with(third) == 4008
    # A slot freed by a disconnect is available again at once.
    await first.disconnect()
    fourth = await welcomed(key)
    await second.disconnect()
    await fourth.disconnect()


async def test_a_message_flood_is_closed_with_4029(acme_key):
    comm = await welcomed(acme_key)
    for i in range(200):
        await comm.send_json_to({"op": "ping", "id": i})
    assert await closed_with(comm) == 4029
