"""Every venue at the wire: the real ccxt REST and websocket code against each fake venue.

One matrix, run for Binance, Coinbase and Kraken: trades stored exactly once, a
dropped connection repaired to exactly the venue's tape, a book that fails its
integrity check (sequence or checksum) rebuilt from a fresh snapshot, backfill
with a progress bar, tickers and REST candles.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from marketdata.feeds.health import feed_health
from marketdata.feeds.live_candles import live_candle_get
from marketdata.live import live_book_get, live_ticker_get
from marketdata.models import Candle1m
from tests.marketdata.feeds.conftest import running_feeds, stored_trades, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_trades_books_and_tickers_arrive_once_with_honest_times(venue, venue_btc):
    async with running_feeds(exchange=venue.id):
        await wait_until(venue.subscribed(), what="subscriptions")
        await venue.emit_trades(25)
        await venue.emit_book(5)
        await venue.emit_ticker()
        ticker_last = float(venue.tape()[-1].price)
        await venue.emit_trades(15)

        await wait_until(lambda: _tape_stored(venue, venue_btc), what="40 stored trades")
        book = await wait_until(lambda: _live_book_matching(venue), what="live book")
        ticker = await wait_until(
            sync_to_async(lambda: live_ticker_get(exchange=venue.id, symbol=venue.symbol)),
            what="live ticker",
        )
        candle = await sync_to_async(live_candle_get)(exchange=venue.id, symbol=venue.symbol)

    assert await stored_trades(venue_btc) == venue.tape_rows()  # each trade exactly once
    (bid, bid_size), (ask, ask_size) = venue.best()
    assert book.bids[0] == (bid, bid_size) and book.asks[0] == (ask, ask_size)
    assert ticker.last == ticker_last
    assert (ticker.bid, ticker.ask) == (bid, ask)
    assert candle["close"] == float(venue.tape()[-1].price)
    if venue.id == "kraken":
        assert ticker.exchange_ts is None  # Kraken's ticker has no time: none is made up
    else:
        assert ticker.exchange_ts is not None and ticker.ts == ticker.exchange_ts


async def test_dropped_connection_is_repaired_to_exactly_the_venue_tape(venue, venue_btc):
    async with running_feeds(exchange=venue.id, kinds=("trades",)):
        await wait_until(venue.subscribed(("trades",)), what="subscription")
        await venue.emit_trades(40)
        await wait_until(lambda: _tape_stored(venue, venue_btc), what="first 40 trades")

        # The venue cuts us off and trades keep printing while we are away: more than a
        # resubscription snapshot (Coinbase, Kraken) carries, so REST has to fill the gap.
        await asyncio.to_thread(venue.fake.drop_connections, refuse_reconnects=True)
        await venue.emit_trades(80)
        venue.fake.accept_connections()
        await wait_until(venue.subscribed(("trades",)), what="resubscription")
        await venue.emit_trades(20)

        await wait_until(lambda: _tape_stored(venue, venue_btc), what="exact tape")
        health = await wait_until(
            lambda: _reported(venue.id, lambda h: h["gaps_repaired"]), what="health report"
        )

    assert len(venue.tape()) == 140
    assert await stored_trades(venue_btc) == venue.tape_rows()  # none missing, none twice
    assert health["gaps_repaired"] >= 1 and health["state"] == "ok"
    assert venue.rest_path("trades") in " ".join(venue.fake.requests)


# Where the venue's snapshot carries no time (docs/marketdata.md "Timestamps").
SNAPSHOT_WITHOUT_TIME = {"binance": True, "coinbase": False, "kraken": True}


async def test_a_book_from_a_snapshot_without_a_venue_time_says_so(venue, venue_btc):
    """Before any delta the book is the venue's snapshot: where that has no time, the
    book's `exchange_ts` is null (never our clock) and `ts` is when we received it."""
    import time

    async with running_feeds(exchange=venue.id, kinds=("book",)):
        await wait_until(venue.subscribed(("book",)), what="subscription")
        subscribed_ms = int(time.time() * 1000)
        book = await wait_until(lambda: _live_book_matching(venue), what="snapshot book")
        received_by_ms = int(time.time() * 1000)
        await venue.emit_book(2)

        async def updated_book():
            latest = await _live_book_matching(venue)
            return latest if latest and latest.ts > book.ts else None

        updated = await wait_until(updated_book, what="the book after two deltas")

    if SNAPSHOT_WITHOUT_TIME[venue.id]:
        assert book.exchange_ts is None
        assert subscribed_ms - 5000 <= book.ts <= received_by_ms  # our receipt time
    else:
        assert book.exchange_ts == book.ts
    # The venue's deltas carry its time: from then on it is the venue's.
    assert updated.exchange_ts is not None and updated.ts == updated.exchange_ts


async def test_book_integrity_failure_takes_a_fresh_snapshot(venue, venue_btc):
    async with running_feeds(exchange=venue.id, kinds=("book",)):
        await wait_until(venue.subscribed(("book",)), what="subscription")
        await venue.emit_book(3)
        await wait_until(lambda: _live_book_matching(venue), what="first book")
        snapshots_before = venue.book_snapshots

        venue.break_book()  # a sequence jump, or a checksum that does not match
        await venue.emit_book(1)
        await wait_until(lambda: venue.book_snapshots > snapshots_before, what="fresh snapshot")
        await wait_until(venue.subscribed(("book",)), what="resubscription")
        await venue.emit_book(3)
        book = await wait_until(lambda: _live_book_matching(venue), what="resynced book")
        health = await wait_until(
            lambda: _reported(venue.id, lambda h: _stream(h, "book")["book_resyncs"]),
            what="health report",
        )

    assert list(book.bids) == venue.bids(len(book.bids))
    assert _stream(health, "book")["book_resyncs"] >= 1


def test_backfill_shows_progress_and_stores_the_venue_tape(venue, venue_btc, capsys):
    venue.fake.emit_trades(venue.market, 1500)  # more than one REST page
    tape = venue.tape()
    out = io.StringIO()
    call_command(
        "backfill",
        f"--exchange={venue.id}",
        f"--symbol={venue_btc.symbol}",
        f"--since={tape[0].time}",
        f"--until={tape[-1].time + 1}",
        "--kind=trades",
        stdout=out,
    )
    assert "1500 new trades" in out.getvalue()
    assert "100%" in capsys.readouterr().err  # the progress bar reached the end
    assert _stored(venue_btc) == venue.tape_rows()


def test_rest_candles_equal_the_venue_candles(venue, venue_btc):
    venue.fake.emit_trades(venue.market, 600)
    tape = venue.tape()
    since = tape[0].time - tape[0].time % 60_000
    call_command(
        "backfill",
        f"--exchange={venue.id}",
        f"--symbol={venue_btc.symbol}",
        f"--since={since}",
        f"--until={tape[-1].time + 1}",
        "--kind=candles",
        stdout=io.StringIO(),
    )
    expected = {}
    for t in tape:
        minute = t.time - t.time % 60_000
        expected.setdefault(minute, []).append(t)
    last_minute = max(expected)  # its end is after --until: only whole minutes are asked for
    stored = {
        int(c.ts.timestamp() * 1000): (c.open, c.high, c.low, c.close, c.volume)
        for c in Candle1m.objects.filter(instrument=venue_btc)
    }
    assert venue.rest_path("candles") in " ".join(venue.fake.requests)
    for minute, trades in expected.items():
        if minute == last_minute and minute not in stored:
            continue
        prices = [float(t.price) for t in trades]
        volume = sum(float(t.qty) for t in trades)  # the venue prints it to 8 decimals
        *ohlc, stored_volume = stored[minute]
        assert ohlc == [prices[0], max(prices), min(prices), prices[-1]]
        assert stored_volume == pytest.approx(volume, abs=1e-7)


# --- helpers ------------------------------------------------------------------------------
def _stored(instrument) -> list[tuple]:
    from marketdata.models import Trade

    return list(
        Trade.objects.filter(instrument=instrument)
        .order_by("ts", "id")
        .values_list("trade_id", "price", "size", "side")
    )


async def _tape_stored(venue, instrument) -> bool:
    return await stored_trades(instrument) == venue.tape_rows()


@sync_to_async
def _live_book_matching(venue):
    book = live_book_get(exchange=venue.id, symbol=venue.symbol)
    if book is None or len(book.bids) < 10:
        return None
    asks = sorted((float(p), float(q)) for p, q in venue.fake.books[venue.market].asks.items())
    matching = (
        list(book.bids) == venue.bids(len(book.bids)) and list(book.asks) == asks[: len(book.asks)]
    )
    return book if matching else None


def _stream(health: dict, kind: str) -> dict:
    return next(s for s in health["streams"] if s["kind"] == kind)


@sync_to_async
def _reported(exchange: str, condition):
    health = feed_health(exchange)[exchange]
    return health if health["streams"] and condition(health) else None
