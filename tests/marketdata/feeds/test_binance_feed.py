"""The feed runner against a fake Binance: the real ccxt REST and websocket code runs.

Repair after a dropped connection and the book's sequence gap run for every venue in
test_venues.py; what is Binance's own (ids, aggregate trades, the nonce) stays here.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async

from marketdata.feeds.live_candles import live_candle_get
from marketdata.live import live_book_get, live_ticker_get
from marketdata.models import Ticker
from marketdata.streaming.store import store_for_settings
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
    started = int(time.time() * 1000)
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
        messages = await wait_until(lambda: _published("trades.binance.BTC-USDT", started))
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
    first = fake_binance.published_tape(SYMBOL)[0]
    data = json.loads(messages[0].data)
    published = {k: data[0][k] for k in ("id", "ts", "price", "size", "side")}
    assert published == {
        "id": str(first.id),
        "ts": first.time,
        "price": float(first.price),
        "size": float(first.qty),
        "side": first.side,
    }


# --- helpers ------------------------------------------------------------------------------
async def _published(channel: str, since_ms: int) -> list:
    """The channel's messages in the stream store (what every web process reads)."""
    store = store_for_settings()
    try:
        _, messages = await store.between(channel, start_ms=since_ms, end_ms=None, previous=False)
    finally:
        await store.aclose()
    return messages


async def _equal(rows_coro, expected) -> bool:
    return await rows_coro == expected


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
