"""Kraken specifics: its book checksum on every message, and trades printed without ids."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from asgiref.sync import sync_to_async

from marketdata.feeds.venues import kraken_book_checksum, synthetic_trade_id
from marketdata.models import Trade
from tests.marketdata.feeds.conftest import only_instrument, running_feeds, wait_until
from tests.marketdata.feeds.test_venues import _live_book_matching, _reported, _stream
from tests.marketdata.feeds.venue_adapters import venue_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kraken(monkeypatch):
    adapter = venue_start("kraken")
    monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({"kraken": adapter.fake.ccxt_urls()}))
    yield adapter
    adapter.fake.stop()


@pytest.fixture
def kraken_without_ids(monkeypatch):
    adapter = venue_start("kraken", trade_ids=False)
    tape = adapter.fake.tapes[adapter.market]
    # Exact twins: two prints equal in time, price, size and side (only a venue id, which
    # this venue does not print, would tell them apart). One before and one during the gap.
    for i in (10, 61):
        tape[i] = dataclasses.replace(tape[i - 1], id=tape[i].id)
    monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({"kraken": adapter.fake.ccxt_urls()}))
    yield adapter
    adapter.fake.stop()


async def test_every_book_message_is_checksummed_and_one_bad_one_resyncs(kraken, transactional_db):
    await sync_to_async(only_instrument)("kraken", "BTC/USD")
    async with running_feeds(exchange="kraken", kinds=("book",)):
        await wait_until(kraken.subscribed(("book",)), what="subscription")
        await kraken.emit_book(60)  # adds, changes and deletions, back to back
        await wait_until(lambda: _live_book_matching(kraken), what="book after 60 updates")
        assert kraken.book_snapshots == 1  # every checksum matched: no resync

        # A burst whose first message is bad: checking only the newest state would miss it.
        kraken.fake.corrupt_next_checksum()
        await kraken.emit_book(5)
        await wait_until(lambda: kraken.book_snapshots == 2, what="fresh snapshot")
        await wait_until(kraken.subscribed(("book",)), what="resubscription")
        await kraken.emit_book(3)
        await wait_until(lambda: _live_book_matching(kraken), what="resynced book")
        health = await wait_until(
            lambda: _reported("kraken", lambda h: _stream(h, "book")["book_resyncs"]),
            what="health report",
        )
    assert _stream(health, "book")["book_resyncs"] == 1


async def test_trades_without_ids_are_stored_once_each_twins_included(
    kraken_without_ids, transactional_db
):
    venue = kraken_without_ids
    instrument = await sync_to_async(only_instrument)("kraken", "BTC/USD")
    async with running_feeds(exchange="kraken", kinds=("trades",)):
        await wait_until(venue.subscribed(("trades",)), what="subscription")
        await venue.emit_trades(40)
        await wait_until(lambda: _count_at_least(instrument, 40), what="first 40 trades")
        await asyncio.to_thread(venue.fake.drop_connections, refuse_reconnects=True)
        await venue.emit_trades(80)  # repaired through REST, whose rows carry no id either
        venue.fake.accept_connections()
        await wait_until(venue.subscribed(("trades",)), what="resubscription")
        await venue.emit_trades(20)
        expected = sorted((t.time, float(t.price), float(t.qty), t.side) for t in venue.tape())
        await wait_until(lambda: _count_at_least(instrument, len(expected)), what="all trades")
        await asyncio.sleep(1.5)  # anything stored twice would show up by now

    rows = await sync_to_async(
        lambda: list(
            Trade.objects.filter(instrument=instrument).values_list(
                "trade_id", "ts", "price", "size", "side"
            )
        )
    )()
    stored = sorted((int(ts.timestamp() * 1000), p, s, side) for _, ts, p, s, side in rows)
    assert stored == expected  # 140 prints, the two twin pairs kept apart, nothing twice
    assert all(trade_id.startswith("x") for trade_id, *_ in rows)


def test_synthetic_ids_are_deterministic_and_tell_twins_apart():
    fields = dict(exchange="kraken", symbol="BTC/USD", ts=1, price="1.0", size="2.0", side="buy")
    first = synthetic_trade_id(**fields, occurrence=0)
    assert first == synthetic_trade_id(**fields, occurrence=0)
    assert first != synthetic_trade_id(**fields, occurrence=1)
    assert first != synthetic_trade_id(**{**fields, "side": "sell"}, occurrence=0)
    assert len(first) <= 64 and not first.isdigit()  # fits the column; never paged by id


def test_checksum_follows_krakens_string_rule():
    # Price and size printed with the pair's decimals, point removed, leading zeros
    # stripped, asks first then bids: "0.05000000" contributes "5000000".
    import zlib

    asks, bids = [(64001.5, 0.05)], [(64000.0, 1.5)]
    expected = zlib.crc32(b"640015" + b"5000000" + b"640000" + b"150000000")
    assert kraken_book_checksum(asks=asks, bids=bids, price_decimals=1, size_decimals=8) == (
        expected
    )


@sync_to_async
def _count_at_least(instrument, n: int) -> bool:
    return Trade.objects.filter(instrument=instrument).count() >= n
