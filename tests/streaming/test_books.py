"""Book deltas: what the publisher sends, how they merge, and the checksum clients verify."""

from __future__ import annotations

import asyncio
import json
import random

import orjson
import pytest
from asgiref.sync import sync_to_async
from quantsaas_client.stream.book import OrderBook, crc32_checksum

from accounts.services.api_keys import api_key_create
from marketdata.consolidated import VenueBook, bbo_merge, book_merge
from marketdata.feeds.publish import Publisher
from marketdata.streaming.books import (
    BOOK_DEPTH,
    HeldBook,
    Ladder,
    book_checksum,
    book_message,
    deltas_merge,
    snapshot_cut,
)
from tests.streaming.conftest import plan_grant, subscribed


def _random_books(count: int, seed: int = 7) -> list[dict]:
    """A walk of full books (60 levels a side, so levels cross the 50-level edge)."""
    rng = random.Random(seed)
    mid = 64000.0
    states = []
    for i in range(count):
        mid += rng.choice((-1.5, -0.5, 0, 0.5, 1.5))
        bids = [[mid - 0.5 * (k + 1), round(rng.uniform(0.01, 3), 5)] for k in range(60)]
        asks = [[mid + 0.5 * (k + 1), round(rng.uniform(0.01, 3), 5)] for k in range(60)]
        for side in (bids, asks):  # some levels keep their size: not every level changes
            for k in rng.sample(range(60), 45):
                side[k][1] = 1.0
        states.append({"bids": bids, "asks": asks, "ts": 1_764_000_000_000 + i})
    return states


def _client_book(snapshot: dict) -> OrderBook:
    book = OrderBook("book.sim.BTC-USD")
    book.replace(orjson.loads(orjson.dumps(snapshot)), 0)
    return book


def test_the_checksum_is_the_python_clients_default():
    state = _random_books(1)[0]
    ladder = Ladder.of(state["bids"], state["asks"])
    client = _client_book({"bids": state["bids"], "asks": state["asks"]})
    assert ladder.checksum() == crc32_checksum(client)
    # Numbers print as JSON writes them: 64000.0 keeps its ".0", sizes their digits.
    assert book_checksum([[64000.0, 1.5]], [[64001.25, 2]]) == __import__("zlib").crc32(
        b"64000.0:1.5:64001.25:2"
    )


def test_deltas_applied_to_the_snapshot_give_the_server_book_at_every_depth():
    states = _random_books(200)
    before = Ladder()
    clients: dict[int, OrderBook] = {}
    for i, state in enumerate(states):
        before, delta, views, full = book_message(before, state)
        if i == 0:  # every depth starts from the full state cut to it
            clients = {d: _client_book(orjson.loads(snapshot_cut(full, d))) for d in (10, 20, 50)}
            continue
        wire = {50: orjson.dumps(delta), **views}
        for depth, book in clients.items():
            data = orjson.loads(wire[depth])
            book.apply(data, i)
            assert crc32_checksum(book) == data["checksum"], (i, depth)
            expected = Ladder.of(state["bids"][:depth], state["asks"][:depth])
            assert [tuple(lv) for lv in expected.top_bids()] == book.bids(), (i, depth)
            assert [tuple(lv) for lv in expected.top_asks()] == book.asks(), (i, depth)
    assert len(clients[50].bids()) == BOOK_DEPTH  # 60 offered, 50 kept


def test_merged_deltas_equal_applying_them_one_by_one():
    states = _random_books(30, seed=3)
    ladder, _, _, full = book_message(Ladder(), states[0])
    raws = []
    for state in states[1:]:
        ladder, delta, _, _ = book_message(ladder, state)
        raws.append(orjson.dumps(delta))
    one_by_one = HeldBook.from_state(full, seq=1, ts=0)
    for seq, raw in enumerate(raws, start=2):
        one_by_one.apply(raw, seq=seq, ts=0)
    merged = HeldBook.from_state(full, seq=1, ts=0)
    merged.apply(deltas_merge(raws), seq=len(raws) + 1, ts=0)
    assert merged.state_raw() == one_by_one.state_raw()
    assert orjson.loads(deltas_merge(raws))["checksum"] == orjson.loads(raws[-1])["checksum"]


def test_consolidation_picks_the_best_venue_per_side_and_merges_levels():
    coinbase = VenueBook("coinbase", bids=[(100.0, 1.0), (99.0, 2.0)], asks=[(101.0, 1.0)], ts=0)
    kraken = VenueBook("kraken", bids=[(100.5, 0.2), (99.0, 1.0)], asks=[(101.0, 3.0)], ts=0)
    bbo = bbo_merge([coinbase, kraken], ts=5)
    assert (bbo["bid"], bbo["bid_venue"]) == (100.5, "kraken")
    # Equal best asks: the venue with more size there.
    assert (bbo["ask"], bbo["ask_size"], bbo["ask_venue"]) == (101.0, 3.0, "kraken")
    assert bbo["venues"] == ["coinbase", "kraken"]
    book = book_merge([coinbase, kraken], depth=50, ts=5)
    assert book["bids"] == [
        [100.5, 0.2, {"kraken": 0.2}],
        [100.0, 1.0, {"coinbase": 1.0}],
        [99.0, 3.0, {"coinbase": 2.0, "kraken": 1.0}],
    ]
    assert book["asks"] == [[101.0, 4.0, {"coinbase": 1.0, "kraken": 3.0}]]
    empty = bbo_merge([], ts=5)
    assert empty["bid"] is None and empty["venues"] == []


async def _frames_until(comm, done, seconds: float = 5.0) -> list[dict]:
    """Frames until `done(frame)` (a receive that times out would end the test app)."""
    frames = []
    while not frames or not done(frames[-1]):
        frames.append(json.loads(await comm.receive_from(seconds)))
    return frames


@pytest.mark.django_db(transaction=True)
async def test_a_delayed_client_of_a_book_with_history_keeps_it_exactly(sim_market, alice, acme):
    """Subscribed after the book has history: the delay line rebuilds the book as of the
    delay from the stored keyframe and deltas, then releases deltas that verify."""
    await sync_to_async(plan_grant)(acme, code="delayed-books", stream_delay_seconds=1)
    key = await sync_to_async(api_key_create)(organization=acme, created_by=alice)
    publisher = Publisher(window_seconds=0)
    states = _random_books(40, seed=11)
    for state in states[:20]:
        await publisher.publish("book", "sim", "BTC/USD", state)
        await publisher.flush()
    await asyncio.sleep(1.3)  # all of it older than the delay: the snapshot is the 20th
    comm = await subscribed(key.raw_key, ["book.sim.BTC-USD"])
    for state in states[20:]:
        await publisher.publish("book", "sim", "BTC/USD", state)
        await publisher.flush()
        await asyncio.sleep(0.02)
    final = publisher.seq["book.sim.BTC-USD"]
    frames = await _frames_until(comm, lambda f: f.get("seq") == final)
    await comm.disconnect()
    data = [f for f in frames if f.get("channel") == "book.sim.BTC-USD"]
    assert data[0]["type"] == "snapshot"
    held = OrderBook("book.sim.BTC-USD")
    held.replace(data[0]["data"], data[0]["seq"])
    assert held.bids() == [tuple(lv) for lv in states[19]["bids"][:20]]
    for frame in data[1:]:
        assert frame["type"] == "update" and frame.get("from_seq", frame["seq"]) == held.seq + 1
        held.apply(frame["data"], frame["seq"])
        assert crc32_checksum(held) == frame["data"]["checksum"]
    assert held.bids() == [tuple(lv) for lv in states[-1]["bids"][:20]]
    assert held.asks() == [tuple(lv) for lv in states[-1]["asks"][:20]]


def test_depth_and_consolidated_channels_are_checked_before_anything_runs():
    from marketdata.streaming.protocol import ProtocolError, channels_unknown, message_parse

    def parse(body: dict):
        return message_parse(text=json.dumps(body), data=None)

    ok = parse({"op": "subscribe", "channels": ["book.sim.BTC-USD"], "depth": 50})
    assert ok.depth == 50
    assert parse({"op": "subscribe", "channels": ["book.sim.BTC-USD"]}).depth is None
    for bad in (25, "20", 20.0, True, 0):
        with pytest.raises(ProtocolError) as refused:
            parse({"op": "subscribe", "channels": ["book.sim.BTC-USD"], "depth": bad})
        assert refused.value.details == {"field": "depth", "allowed": [10, 20, 50]}

    venues = {("sim", "BTC-USD"), ("coinbase", "BTC-USD"), ("binance", "BTC-USDT")}
    channels = [
        "bbo.consolidated.BTC-USD",
        "book.consolidated.BTC-USDT",
        "bbo.consolidated.ETH-USD",  # no venue offers it
        "trades.consolidated.BTC-USD",  # only bbo and book are consolidated
        "bbo.coinbase.BTC-USD",  # bbo is consolidated only
    ]
    assert channels_unknown(channels, instruments=venues) == channels[2:]
    # The simulator alone makes no consolidated pair.
    assert channels_unknown(channels[:1], instruments={("sim", "BTC-USD")}) == channels[:1]
