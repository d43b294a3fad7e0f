"""Plan limits on subscriptions: a book depth cap and a conflation floor."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from asgiref.sync import sync_to_async
from quantsaas_client.stream.book import OrderBook

from accounts.services.api_keys import api_key_create
from marketdata.feeds.publish import Publisher
from tests.streaming.conftest import connected, plan_grant, receive

pytestmark = pytest.mark.django_db(transaction=True)

BOOK = "book.sim.BTC-USD"


def deep_book(i: int, levels: int = 30) -> dict:
    return {
        "bids": [[1000.0 + i - k, 1.0] for k in range(levels)],
        "asks": [[1001.0 + i + k, 2.0] for k in range(levels)],
        "ts": int(time.time() * 1000),
    }


async def _key_on_plan(alice, acme, **limits) -> str:
    await sync_to_async(plan_grant)(acme, code="limited", **limits)
    key = await sync_to_async(api_key_create)(organization=acme, created_by=alice, name="s")
    return key.raw_key


async def test_a_book_deeper_than_the_plan_allows_is_refused_and_the_default_fits(
    sim_market, alice, acme
):
    key = await _key_on_plan(alice, acme, book_depth=10)
    publisher = Publisher()
    await publisher.publish("book", "sim", "BTC/USD", deep_book(0))
    await publisher.flush()
    comm = await connected(key=key)
    assert (await receive(comm))["limits"]["book_depth"] == 10

    await comm.send_json_to({"op": "subscribe", "channels": [BOOK], "depth": 50})
    error = await receive(comm)
    assert error["type"] == "error" and error["code"] == "plan_required", error
    assert "10 levels" in error["message"]
    assert error["details"] == {"limit": 10, "depth": 50, "channels": [BOOK]}
    await comm.send_json_to({"op": "ping", "id": 1})  # still open, nothing subscribed
    assert await receive(comm) == {"type": "pong", "id": 1}

    await comm.send_json_to({"op": "subscribe", "channels": [BOOK]})  # no depth: the plan's
    assert (await receive(comm))["type"] == "subscribed"
    snapshot = await receive(comm)
    assert snapshot["type"] == "snapshot"
    assert len(snapshot["data"]["bids"]) == len(snapshot["data"]["asks"]) == 10
    await publisher.publish("book", "sim", "BTC/USD", deep_book(1))
    await publisher.flush()
    update = await receive(comm)  # the 10-level view's deltas
    assert update["type"] == "update" and len(update["data"]["bids"]) <= 10
    await comm.disconnect()


async def test_a_conflation_floor_raises_the_request_and_spaces_the_frames(sim_market, alice, acme):
    key = await _key_on_plan(alice, acme, stream_conflate_floor_ms=500)
    publisher = Publisher()
    comm = await connected(key=key)
    assert (await receive(comm))["limits"]["conflate_ms"] == 500
    await comm.send_json_to({"op": "subscribe", "channels": [BOOK], "conflate_ms": 0})
    assert await receive(comm) == {"type": "subscribed", "channels": [BOOK], "conflate_ms": 500}
    received: list[tuple[float, dict]] = []
    loop = asyncio.get_running_loop()

    async def read() -> None:
        while True:
            frame = await receive(comm, 5)
            received.append((loop.time(), frame))  # when it arrived

    reader = asyncio.ensure_future(read())
    for i in range(1, 31):  # 30 book changes over 1.5 s
        await publisher.publish("book", "sim", "BTC/USD", deep_book(i, levels=1))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.8)
    reader.cancel()
    times = [t for t, _ in received]
    assert 2 <= len(received) <= 5, received  # the snapshot, then one frame per 500 ms
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(times)), received
    held = OrderBook(BOOK)  # nothing dropped: the merged frames end in the latest book
    held.replace(received[0][1]["data"], received[0][1]["seq"])
    for _, frame in received[1:]:
        held.apply(frame["data"], frame["seq"])
    assert held.bids() == [(1030.0, 1.0)] and held.asks() == [(1031.0, 2.0)]
    await comm.disconnect()


async def test_without_a_cap_or_floor_a_subscription_gets_the_full_book_and_every_update(
    acme_key,
):
    publisher = Publisher()
    await publisher.publish("book", "sim", "BTC/USD", deep_book(0, levels=60))
    await publisher.flush()
    comm = await connected(key=acme_key)
    welcome = await receive(comm)
    assert welcome["limits"]["conflate_ms"] == 0 and welcome["limits"]["book_depth"] == 50
    await comm.send_json_to({"op": "subscribe", "channels": [BOOK], "depth": 50})
    assert await receive(comm) == {"type": "subscribed", "channels": [BOOK], "conflate_ms": 0}
    assert len((await receive(comm))["data"]["bids"]) == 50
    await publisher.publish("book", "sim", "BTC/USD", deep_book(1, levels=60))
    await publisher.flush()
    assert (await receive(comm))["type"] == "update"
    await comm.disconnect()
