"""The feed runner against a fake Binance: the real ccxt REST and websocket code runs."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from marketdata.feeds.groups import group_for
from marketdata.feeds.health import feed_health
from marketdata.feeds.live_candles import live_candle_get
from marketdata.live import live_book_get, live_ticker_get
from marketdata.models import Ticker
from tests.marketdata.feeds.conftest import (
    running_feeds,
    stored_trades,
    tape_rows,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOL = "BTCUSDT"
STREAMS = {"btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@ticker"}


def subscribed(fake, streams=STREAMS):
    return lambda: streams <= fake.subscriptions()


async def emit(fake, method: str, *args):
    return await asyncio.to_thread(getattr(fake, method), *args)


async def test_trades_books_and_tickers_arrive_normalised_stored_and_published(
    fake_binance, binance_btc
):
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(group_for("trades", "binance", "BTC/USDT"), listener)

    async with running_feeds(exchange="binance"):
        await wait_until(subscribed(fake_binance), what="subscriptions")
        await emit(fake_binance, "emit_trades", SYMBOL, 25)
        await emit(fake_binance, "emit_depth", SYMBOL, 5)
        await emit(fake_binance, "emit_ticker", SYMBOL)

        tape = tape_rows(fake_binance.published_tape(SYMBOL))
        await wait_until(lambda: _equal(stored_trades(binance_btc), tape), what="25 stored trades")
        book = await wait_until(
            lambda: _book_with_nonce(fake_binance.books[SYMBOL].update_id), what="live book"
        )
        ticker = await wait_until(
            sync_to_async(lambda: live_ticker_get(exchange="binance", symbol="BTC/USDT")),
            what="live ticker",
        )
        message = await asyncio.wait_for(layer.receive(listener), 5)
        candle = await sync_to_async(live_candle_get)(exchange="binance", symbol="BTC/USDT")

    fake_book = fake_binance.books[SYMBOL]
    best_bid = max(fake_book.bids, key=float)
    best_ask = min(fake_book.asks, key=float)
    assert book.bids[0] == (float(best_bid), float(fake_book.bids[best_bid]))
    assert book.asks[0] == (float(best_ask), float(fake_book.asks[best_ask]))
    assert all(a[0] < b[0] for a, b in zip(book.asks, book.asks[1:], strict=False))

    last = fake_binance.published_tape(SYMBOL)[-1]
    assert ticker.last == float(last.price)
    assert (ticker.bid, ticker.ask) == (float(best_bid), float(best_ask))
    assert await sync_to_async(Ticker.objects.filter(instrument=binance_btc).exists)()

    assert candle["close"] == float(last.price) and candle["is_final"] is False
    assert message["channel"] == "trades.binance.BTC-USDT"
    first = fake_binance.published_tape(SYMBOL)[0]
    published = {k: message["data"][0][k] for k in ("id", "ts", "price", "size", "side")}
    assert published == {
        "id": str(first.id),
        "ts": first.time,
        "price": float(first.price),
        "size": float(first.qty),
        "side": first.side,
    }


async def test_dropped_connection_is_repaired_to_exactly_the_exchange_tape(
    fake_binance, binance_btc
):
    async with running_feeds(exchange="binance", kinds=("trades",)):
        streams = {"btcusdt@aggTrade"}
        await wait_until(subscribed(fake_binance, streams), what="subscription")
        await emit(fake_binance, "emit_trades", SYMBOL, 40)
        await wait_until(
            lambda: _count_at_least(stored_trades(binance_btc), 40), what="first 40 trades"
        )

        # The exchange cuts us off and trades keep printing while we are away.
        await asyncio.to_thread(fake_binance.drop_connections, refuse_reconnects=True)
        await emit(fake_binance, "emit_trades", SYMBOL, 30)
        fake_binance.accept_connections()
        await wait_until(subscribed(fake_binance, streams), what="resubscription")
        await emit(fake_binance, "emit_trades", SYMBOL, 20)

        tape = tape_rows(fake_binance.published_tape(SYMBOL))
        assert len(tape) == 90
        await wait_until(lambda: _equal(stored_trades(binance_btc), tape), what="exact tape")
        health = await wait_until(
            lambda: _reported(lambda h: h["binance"]["gaps_repaired"]), what="health report"
        )

    stored = await stored_trades(binance_btc)
    assert stored == tape  # none missing, none twice, in order
    assert health["binance"]["gaps_repaired"] >= 1
    assert health["binance"]["state"] == "ok"
    assert "/api/v3/aggTrades" in " ".join(fake_binance.requests)


async def test_book_sequence_gap_takes_a_fresh_snapshot(fake_binance, binance_btc):
    async with running_feeds(exchange="binance", kinds=("book",)):
        streams = {"btcusdt@depth@100ms"}
        await wait_until(subscribed(fake_binance, streams), what="subscription")
        await emit(fake_binance, "emit_depth", SYMBOL, 3)
        await wait_until(
            lambda: _book_with_nonce(fake_binance.books[SYMBOL].update_id), what="first book"
        )
        snapshots_before = fake_binance.depth_requests

        fake_binance.break_depth_sequence(SYMBOL)
        await emit(fake_binance, "emit_depth", SYMBOL, 1)  # U jumps: the local book is wrong
        await wait_until(
            lambda: fake_binance.depth_requests > snapshots_before, what="fresh snapshot"
        )
        await wait_until(subscribed(fake_binance, streams), what="resubscription")
        await emit(fake_binance, "emit_depth", SYMBOL, 3)
        target = fake_binance.books[SYMBOL].update_id
        book = await wait_until(lambda: _book_with_nonce(target), what="resynced book")
        health = await wait_until(
            lambda: _reported(lambda h: h["binance"]["streams"][0]["book_resyncs"]),
            what="health report",
        )

    fake_book = fake_binance.books[SYMBOL]
    expected_bids = sorted(((float(p), float(q)) for p, q in fake_book.bids.items()), reverse=True)
    assert list(book.bids) == expected_bids[: len(book.bids)]
    book_stream = next(s for s in health["binance"]["streams"] if s["kind"] == "book")
    assert book_stream["book_resyncs"] >= 1


# --- helpers ------------------------------------------------------------------------------
async def _equal(rows_coro, expected) -> bool:
    return await rows_coro == expected


async def _count_at_least(rows_coro, n: int) -> bool:
    return len(await rows_coro) >= n


@sync_to_async
def _reported(condition):
    health = feed_health("binance")
    return health if health["binance"]["streams"] and condition(health) else None


@sync_to_async
def _book_with_nonce(nonce: int):
    book = live_book_get(exchange="binance", symbol="BTC/USDT")
    return book if book is not None and book.seq == nonce else None


async def test_watchdog_restarts_a_stream_that_goes_quiet(fake_binance, binance_btc, monkeypatch):
    from dataclasses import replace

    from marketdata.feeds import config

    monkeypatch.setitem(
        config.EXCHANGES, "binance", replace(config.EXCHANGES["binance"], quiet_seconds=1.0)
    )
    async with running_feeds(exchange="binance", kinds=("trades",)):
        streams = {"btcusdt@aggTrade"}
        await wait_until(subscribed(fake_binance, streams), what="subscription")
        await emit(fake_binance, "emit_trades", SYMBOL, 3)
        # Nothing more is sent: the connection is open but silent, as a half-open one is.
        await wait_until(lambda: fake_binance.connections >= 2, what="a fresh connection")
        await wait_until(subscribed(fake_binance, streams), what="resubscription")
        await emit(fake_binance, "emit_trades", SYMBOL, 3)
        tape = tape_rows(fake_binance.published_tape(SYMBOL))
        await wait_until(lambda: _equal(stored_trades(binance_btc), tape), what="all trades")
