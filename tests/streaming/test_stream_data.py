"""Market data through the hub: seq, snapshots, delayed plans, usage, clean leaving."""

from __future__ import annotations

import asyncio
import time
import zlib
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async

from accounts.services.api_keys import api_key_create
from billing.usage import usage_live
from marketdata.feeds.publish import Publisher
from marketdata.streaming import hub as hub_module
from marketdata.streaming.hub import hub_peek
from marketdata.streaming.quotas import slots_key
from tests.streaming.conftest import book, plan_grant, receive, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

TRADES = "trades.sim.BTC-USD"
BOOK = "book.sim.BTC-USD"


def trade(i: int) -> dict:
    return {
        "id": str(i),
        "ts": int(time.time() * 1000),
        "price": 100.0 + i,
        "size": 1.0,
        "side": "buy",
    }


async def test_updates_carry_every_record_with_consecutive_seq(acme_key):
    comm = await subscribed(acme_key, [TRADES])
    publisher = Publisher(window_seconds=0.05)
    for i in range(30):
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    seen, seqs = [], []
    while len(seen) < 30:
        frame = await receive(comm)
        assert frame["type"] == "update" and frame["channel"] == TRADES
        seqs.append(frame["seq"])
        seen += frame["data"]
    assert [t["id"] for t in seen] == [str(i) for i in range(30)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(seqs) < 30  # batched: fewer messages than records
    assert all("recv_ts" in t and "ts" in t for t in seen)
    await comm.disconnect()


async def test_book_subscription_starts_with_a_snapshot_then_updates_follow_its_seq(acme_key):
    publisher = Publisher(window_seconds=0)
    first = await subscribed(acme_key, [BOOK])
    await publisher.publish("book", "sim", "BTC/USD", book(1))
    snap = await receive(first)
    assert snap["type"] == "snapshot" and snap["data"]["bids"] == [[101.0, 1.0]]
    # A later subscriber gets the hub's current state at once, with its seq.
    second = await subscribed(acme_key, [BOOK])
    late = await receive(second)
    assert late["type"] == "snapshot" and late["seq"] == snap["seq"]
    await publisher.publish("book", "sim", "BTC/USD", book(2))
    for comm in (first, second):
        update = await receive(comm)
        assert update["type"] == "update" and update["seq"] == snap["seq"] + 1
        # Only what changed: the new levels, and size 0 for the levels that went.
        assert update["data"]["bids"] == [[102.0, 1.0], [101.0, 0]]
        assert update["data"]["asks"] == [[102.0, 0], [103.0, 2.0]]
        assert update["data"]["checksum"] == zlib.crc32(b"102.0:1.0:103.0:2.0")
    await first.disconnect()
    await second.disconnect()


async def test_delayed_plan_gets_the_same_seq_late_and_no_real_time_snapshot(
    sim_market, alice, acme, globex, mallory
):
    await sync_to_async(plan_grant)(acme, code="delayed", stream_delay_seconds=1)
    await sync_to_async(plan_grant)(globex, code="live")
    delayed_key = await sync_to_async(api_key_create)(organization=acme, created_by=alice)
    live_key = await sync_to_async(api_key_create)(organization=globex, created_by=mallory)
    live = await subscribed(live_key.raw_key, [BOOK])
    publisher = Publisher(window_seconds=0)
    await publisher.publish("book", "sim", "BTC/USD", book(1))
    live_snap = await receive(live)
    # The delayed client subscribes after the real-time state exists: it must not get it.
    delayed = await subscribed(delayed_key.raw_key, [BOOK])
    await publisher.publish("book", "sim", "BTC/USD", book(2))
    live_update = await receive(live)
    assert await delayed.receive_nothing(timeout=0.7)
    first = await receive(delayed, seconds=3)
    received_at = time.time() * 1000
    # Its first frame is the state as it was a delay ago (replayed from the channel's
    # recent history), never the real-time one; then the same updates, as late.
    assert first["type"] == "snapshot" and first["seq"] == live_snap["seq"]
    assert received_at - first["data"]["ts"] >= 1000
    second = await receive(delayed, seconds=3)
    assert second["type"] == "update" and second["seq"] == live_update["seq"]
    assert time.time() * 1000 - second["data"]["ts"] >= 1000
    await live.disconnect()
    await delayed.disconnect()


async def test_delivered_messages_are_counted_into_usage(acme_key, acme, monkeypatch):
    monkeypatch.setattr(hub_module, "USAGE_FLUSH_SECONDS", 0.5)
    comm = await subscribed(acme_key, [TRADES])
    publisher = Publisher(window_seconds=0)
    for i in range(5):
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await publisher.flush()  # five messages, not one merged
        assert (await receive(comm))["type"] == "update"
    deadline = time.monotonic() + 5
    counted = 0
    while time.monotonic() < deadline and counted < 5:
        await asyncio.sleep(0.3)
        live = await sync_to_async(usage_live)(organization=acme, day=_today())
        counted = live["stream_messages"]
    assert counted == 5
    await comm.disconnect()


def _today():
    return datetime.now(UTC).date()


async def test_leaving_clients_free_their_slots_and_the_hub_stops_reading_later(
    acme_key, acme, monkeypatch
):
    comms = [await subscribed(acme_key, [TRADES, BOOK]) for _ in range(5)]
    hub = hub_peek()
    assert hub.joined == {TRADES, BOOK}  # one reader for the process, not five
    slots = hub.slots.client
    assert await slots.zcard(slots_key(acme.pk)) == 5
    monkeypatch.setattr(hub_module, "LEAVE_AFTER_SECONDS", 0.5)
    await asyncio.gather(*(c.disconnect() for c in comms))
    await asyncio.sleep(0.2)
    assert await slots.zcard(slots_key(acme.pk)) == 0
    assert not hub.connections
    # Still read for a moment (a client cycling subscriptions costs no re-read), then left.
    assert hub.joined == {TRADES, BOOK}
    deadline = time.monotonic() + 5
    while hub.joined and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the hub's state
        await asyncio.sleep(0.2)
    assert hub.joined == set() and not hub.connections
