"""The consolidator in the feed runner: which venues count, and what it publishes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from marketdata.feeds.consolidator import Consolidator
from marketdata.feeds.health import StreamHealth
from marketdata.feeds.publish import Publisher
from marketdata.records import BookUpdate
from marketdata.streaming.store import LocalStore

BBO = "bbo.consolidated.BTC-USD"
VENUES = {"coinbase": "BTC/USD", "kraken": "BTC/USD", "binance": "BTC/USDT", "sim": "BTC/USD"}


def book(venue: str, bid: float, ask: float) -> BookUpdate:
    symbol = VENUES[venue]
    return BookUpdate(exchange=venue, symbol=symbol, ts=0, bids=((bid, 1.0),), asks=((ask, 2.0),))


@pytest.fixture
def parts():
    store = LocalStore(seconds=60, maxlen=1000)
    publisher = Publisher(store=store, window_seconds=0)
    instruments = [
        SimpleNamespace(exchange_id=v, symbol=s.replace("/", "-"), ccxt_symbol=s)
        for v, s in VENUES.items()
    ]
    healths = [StreamHealth(exchange=v, kind="book", symbol=s) for v, s in VENUES.items()]
    for health in healths:
        health.connected = True
    consolidator = Consolidator(publisher, instruments, healths)
    return SimpleNamespace(store=store, consolidator=consolidator, healths=healths)


def last_bbo(store: LocalStore) -> dict:
    return orjson.loads(store.streams[BBO][-1].data)


async def settled() -> None:
    for _ in range(5):  # the merge's loop turn, then the publisher's flush
        await asyncio.sleep(0)


async def test_pairs_keep_quotes_apart_and_leave_the_simulator_out(parts):
    assert parts.consolidator.pair_of == {
        ("coinbase", "BTC/USD"): "BTC-USD",
        ("kraken", "BTC/USD"): "BTC-USD",
        ("binance", "BTC/USDT"): "BTC-USDT",
    }
    await parts.consolidator.book(book("sim", 99999.0, 100000.0))  # no pair: ignored
    await settled()
    assert BBO not in parts.store.streams


async def test_a_venue_drops_out_when_its_feed_is_down_or_its_book_goes_stale(parts, monkeypatch):
    monkeypatch.setenv("CONSOLIDATED_STALE_SECONDS", "0.6")
    c = parts.consolidator
    await c.book(book("coinbase", 100.0, 102.0))
    await c.book(book("kraken", 100.5, 101.5))
    await settled()
    bbo = last_bbo(parts.store)
    assert (bbo["bid_venue"], bbo["ask_venue"], bbo["venues"]) == (
        "kraken",
        "kraken",
        ["coinbase", "kraken"],
    )
    published = len(parts.store.streams[BBO])
    await c.book(book("coinbase", 100.0, 102.0))  # nothing changed: no new BBO
    await settled()
    assert len(parts.store.streams[BBO]) == published

    stop = asyncio.Event()
    watcher = asyncio.ensure_future(c.run(stop))
    try:
        kraken = next(h for h in parts.healths if h.exchange == "kraken")
        kraken.connected = False  # its feed went down
        await asyncio.sleep(0.7)
        await settled()
        bbo = last_bbo(parts.store)
        assert (bbo["bid_venue"], bbo["bid"], bbo["venues"]) == ("coinbase", 100.0, ["coinbase"])
        await asyncio.sleep(0.8)  # coinbase quiet past the limit: no venue is left
        await settled()
        bbo = last_bbo(parts.store)
        assert bbo["venues"] == [] and bbo["bid"] is None and bbo["ask"] is None
    finally:
        stop.set()
        await watcher


async def test_rest_reads_the_latest_state_or_the_one_before_a_delay(monkeypatch):
    """What GET .../consolidated/<PAIR>/bbo and /book answer, from the stream store."""
    import time

    from asgiref.sync import sync_to_async

    from marketdata.consolidated import consolidated_read
    from marketdata.streaming.store import keyframe_key, replay_key, state_key, store_for_settings

    pair = "TESTREST-USD"
    channels = [f"bbo.consolidated.{pair}", f"book.consolidated.{pair}"]
    store = store_for_settings()
    keys = [k for c in channels for k in (replay_key(c), state_key(c), keyframe_key(c))]
    await store.client.delete(*keys)
    publisher = Publisher(store=store, window_seconds=0)
    venue = [[100.0, 1.0, {"coinbase": 1.0}]]
    try:
        now = time.time_ns() // 1_000_000
        bbo = {"bid": 100.0, "bid_venue": "coinbase", "venues": ["coinbase"], "ts": now}
        await publisher.publish_to(channels[0], "bbo", bbo)
        await publisher.publish_to(channels[1], "book", {"bids": venue, "asks": [], "ts": now})
        await publisher.flush()
        before = time.time_ns() // 1_000_000
        await asyncio.sleep(1.1)  # the next book state makes a keyframe of its own
        later = time.time_ns() // 1_000_000
        bbo2 = {**bbo, "bid": 101.0, "ts": later}
        book2 = {"bids": [[101.0, 2.0, {"coinbase": 2.0}]], "asks": [], "ts": later}
        await publisher.publish_to(channels[0], "bbo", bbo2)
        await publisher.publish_to(channels[1], "book", book2)
        await publisher.flush()
        read = sync_to_async(consolidated_read)
        now = time.time_ns() // 1_000_000
        assert (await read("bbo", pair, at_ms=None, now_ms=now))["bid"] == 101.0
        assert (await read("book", pair, at_ms=None, now_ms=now))["bids"] == book2["bids"]
        assert (await read("bbo", pair, at_ms=before, now_ms=now))["bid"] == 100.0
        assert (await read("book", pair, at_ms=before, now_ms=now))["bids"] == venue
        assert await read("bbo", "NOPE-USD", at_ms=None, now_ms=now) is None
        # Nothing published for longer than the staleness limit: the runner is gone.
        stale = await read("bbo", pair, at_ms=None, now_ms=now + 60_000)
        assert stale["venues"] == [] and stale["bid"] is None
    finally:
        await store.client.delete(*keys)
        await store.aclose()


async def test_a_stopping_runner_says_no_venue_is_left(parts):
    await parts.consolidator.book(book("coinbase", 100.0, 102.0))
    await settled()
    assert last_bbo(parts.store)["venues"] == ["coinbase"]
    await parts.consolidator.stop()
    await settled()
    assert last_bbo(parts.store)["venues"] == []
    last_book = orjson.loads(parts.store.states["book.consolidated.BTC-USD"].data)
    assert last_book["bids"] == [] and last_book["venues"] == []
