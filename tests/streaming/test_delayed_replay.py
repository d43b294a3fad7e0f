"""Delayed plans replay a channel's recent history from Redis when their server had none."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.services.api_keys import api_key_create
from marketdata.feeds.publish import Publisher
from marketdata.streaming.hub import hub_peek
from marketdata.streaming.store import GUARD_EVERY, RedisStore, replay_key
from tests.streaming.conftest import book, plan_grant, receive, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

TRADES = "trades.sim.BTC-USD"
BOOK = "book.sim.BTC-USD"
DELAY = 2


def trade(i: int) -> dict:
    return {"id": str(i), "ts": int(time.time() * 1000), "price": 100.0 + i, "size": 1.0}


async def keys(sim_market, alice, acme, globex, mallory) -> tuple[str, str]:
    """A key on a plan delayed by DELAY seconds (acme) and a real-time one (globex)."""
    await sync_to_async(plan_grant)(acme, code="delayed", stream_delay_seconds=DELAY)
    await sync_to_async(plan_grant)(globex, code="live")
    delayed = await sync_to_async(api_key_create)(organization=acme, created_by=alice)
    live = await sync_to_async(api_key_create)(organization=globex, created_by=mallory)
    return delayed.raw_key, live.raw_key


async def frames_until(comm, last_seq: int, seconds: float) -> list[tuple[float, dict]]:
    """(receipt time in ms, frame) of market data until `last_seq` arrives."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        frame = await receive(comm, max(0.05, deadline - time.monotonic()))
        if frame["type"] in ("update", "snapshot"):
            got.append((time.time() * 1000, frame))
            if frame["seq"] >= last_seq:
                return got


async def published_ts(channel: str) -> dict[int, int]:
    """seq -> publish time, as the publisher wrote it to the replay stream."""
    replay = RedisStore(settings.REDIS_URL, seconds=60, maxlen=1000)
    try:
        _, entries = await replay.between(channel, start_ms=0, end_ms=None, previous=False)
    finally:
        await replay.aclose()
    return {e.seq: e.ts for e in entries}


async def test_a_delayed_client_on_an_unwatched_channel_replays_the_delay_then_goes_on_live(
    sim_market, alice, acme, globex, mallory
):
    delayed_key, _ = await keys(sim_market, alice, acme, globex, mallory)
    publisher = Publisher(window_seconds=0)
    for i in range(10):  # nobody on this server listens yet
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await asyncio.sleep(0.08)
    delayed = await subscribed(delayed_key, [TRADES])
    for i in range(10, 20):
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await asyncio.sleep(0.08)
    got = await frames_until(delayed, 20, seconds=DELAY + 4)
    ts = await published_ts(TRADES)
    seqs = [frame["seq"] for _, frame in got]
    assert seqs == list(range(1, 21))  # the history, then live, each once, no gap
    assert [t["id"] for _, f in got for t in f["data"]] == [str(i) for i in range(20)]
    for received, frame in got:
        assert received - ts[frame["seq"]] >= DELAY * 1000
    # Released as time passes, not in one burst: about 0.8 s from the first to the tenth.
    assert got[9][0] - got[0][0] >= 500
    await delayed.disconnect()


async def test_a_delayed_book_starts_from_the_state_of_delay_ago_and_live_clients_are_unaffected(
    sim_market, alice, acme, globex, mallory
):
    delayed_key, live_key = await keys(sim_market, alice, acme, globex, mallory)
    publisher = Publisher(window_seconds=0)
    await publisher.publish("book", "sim", "BTC/USD", book(1))  # older than the delay
    await asyncio.sleep(DELAY + 0.3)
    await publisher.flush()
    live = await subscribed(live_key, [BOOK])
    # Real time: the latest state at once (it is stored), then what follows.
    frame = await receive(live)
    assert (frame["type"], frame["seq"]) == ("snapshot", 1)
    for i in (2, 3):
        await publisher.publish("book", "sim", "BTC/USD", book(i))
        await publisher.flush()
    delayed = await subscribed(delayed_key, [BOOK])
    snapshot = await receive(delayed, seconds=1)
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1
    assert snapshot["data"]["bids"] == [[101.0, 1.0]]
    await publisher.publish("book", "sim", "BTC/USD", book(4))
    covered = []  # frames may merge messages: from_seq..seq
    while not covered or covered[-1] < 4:
        frame = await receive(live)
        assert frame["type"] == "update"
        covered.extend(range(frame.get("from_seq", frame["seq"]), frame["seq"] + 1))
        assert time.time() * 1000 - frame["data"]["recv_ts"] < 1000
    assert covered == [2, 3, 4]
    got = await frames_until(delayed, 4, seconds=DELAY + 3)
    ts = await published_ts(BOOK)
    assert {f["type"] for _, f in got} == {"update"}
    assert [s for _, f in got for s in range(f.get("from_seq", f["seq"]), f["seq"] + 1)] == [
        2,
        3,
        4,
    ]
    for received, frame in got:
        assert received - ts[frame["seq"]] >= DELAY * 1000
    assert await live.receive_nothing(timeout=0.2)
    await live.disconnect()
    await delayed.disconnect()


async def test_without_history_a_delayed_client_waits_out_the_delay_as_before(
    sim_market, alice, acme, globex, mallory
):
    delayed_key, _ = await keys(sim_market, alice, acme, globex, mallory)
    publisher = Publisher(window_seconds=0)
    store, publisher.store = publisher.store, None
    await publisher.publish("book", "sim", "BTC/USD", book(1))  # as if trimmed away
    publisher.store = store
    delayed = await subscribed(delayed_key, [BOOK])
    await publisher.publish("book", "sim", "BTC/USD", book(2))
    subscribed_at = time.time() * 1000
    assert await delayed.receive_nothing(timeout=DELAY - 0.5)
    first = await receive(delayed, seconds=3)
    # The first frame is the first message published after the subscription, delayed.
    assert first["type"] == "snapshot" and first["data"]["bids"] == [[102.0, 1.0]]
    assert time.time() * 1000 - subscribed_at >= DELAY * 1000 - 50
    await delayed.disconnect()


def stored(seq: int, ts: int) -> dict:
    return {"channel": TRADES, "seq": seq, "ts": ts, "records": 0, "data": b"[]"}


async def test_the_replay_stream_is_trimmed_by_length_and_age(transactional_db):
    replay = RedisStore(settings.REDIS_URL, seconds=1, maxlen=200)
    key = replay_key(TRADES)
    try:
        for start in range(0, 2000, 100):
            await replay.append(
                [
                    {
                        "channel": TRADES,
                        "seq": seq,
                        "ts": int(time.time() * 1000),
                        "records": 0,
                        "data": b"[]",
                    }
                    for seq in range(start + 1, start + 101)
                ]
            )
        # Approximate trimming drops whole nodes (100 entries each by default), and the
        # length guard runs every GUARD_EVERY appends.
        assert 200 <= await replay.client.xlen(key) <= 200 + 100 + GUARD_EVERY
        assert 0 < await replay.client.pttl(key) <= 1000
        await asyncio.sleep(1.2)
        await replay.append(
            [{"channel": TRADES, "seq": 2001, "ts": 0, "records": 0, "data": b"[]"}]
        )
        assert await replay.client.xlen(key) <= 100  # the older nodes aged out
        _, entries = await replay.between(TRADES, start_ms=0, end_ms=None, previous=False)
        assert entries[-1].seq == 2001
    finally:
        await replay.aclose()


async def test_a_delayed_client_cycling_subscriptions_reads_the_history_once(
    sim_market, alice, acme, globex, mallory
):
    delayed_key, _ = await keys(sim_market, alice, acme, globex, mallory)
    publisher = Publisher()
    for i in range(50):  # some history for the delay line to read
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await publisher.flush()
    comm = await subscribed(delayed_key, [TRADES])
    await comm.send_json_to({"op": "ping", "id": 0})  # answered once the subscription is made
    while (await receive(comm))["type"] != "pong":
        pass
    hub = hub_peek()
    reads = []
    between = hub.store.between

    async def counted(*args, **kwargs):
        reads.append(args)
        return await between(*args, **kwargs)

    hub.store.between = counted
    for _ in range(20):  # what stalled every client of the process before
        await comm.send_json_to({"op": "unsubscribe", "channels": [TRADES]})
        await comm.send_json_to({"op": "subscribe", "channels": [TRADES]})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await comm.send_json_to({"op": "ping", "id": 1})
    while (await receive(comm))["type"] != "pong":
        pass
    assert loop.time() - started < 1.0
    assert reads == []  # the line still holds the channel: nothing re-read
    await comm.disconnect()
