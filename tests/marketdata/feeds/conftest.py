"""Fixtures for the feed runner tests: the fake venues and a runner started against them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from marketdata.models import Exchange, Instrument, Trade
from quantsaas.feeds import feeds_run_live
from tests.fakes.binance_server import FakeBinance
from tests.marketdata.feeds.venue_adapters import VenueAdapter, venue_start

VENUES = ("binance", "coinbase", "kraken")


@pytest.fixture
def fake_binance(monkeypatch):
    with FakeBinance() as fake:
        # The runner's own client factory reads this, so the production code path runs.
        monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({"binance": fake.ccxt_urls()}))
        yield fake


@pytest.fixture
def binance_btc(transactional_db) -> Instrument:
    return only_instrument("binance", "BTC/USDT")


def only_instrument(exchange_id: str, ccxt_symbol: str) -> Instrument:
    """The one active instrument (the others are deactivated, so a runner streams only it)."""
    exchange, _ = Exchange.objects.get_or_create(
        id=exchange_id, defaults={"name": exchange_id.title()}
    )
    Instrument.objects.exclude(exchange=exchange, ccxt_symbol=ccxt_symbol).update(active=False)
    base, quote = ccxt_symbol.split("/")
    instrument, _ = Instrument.objects.update_or_create(
        exchange=exchange,
        ccxt_symbol=ccxt_symbol,
        defaults={
            "symbol": f"{base}-{quote}",
            "base": base,
            "quote": quote,
            "price_precision": Decimal("0.01"),
            "size_precision": Decimal("0.00001"),
            "active": True,
        },
    )
    return instrument


@pytest.fixture(params=VENUES)
def venue(request, monkeypatch) -> VenueAdapter:
    """Each venue's fake in turn, with the runner's own client factory pointed at it."""
    adapter = venue_start(request.param, **getattr(request, "fake_kwargs", {}))
    monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({adapter.id: adapter.fake.ccxt_urls()}))
    try:
        yield adapter
    finally:
        adapter.fake.stop()


@pytest.fixture
def venue_btc(venue, transactional_db) -> Instrument:
    return only_instrument(venue.id, venue.symbol)


async def wait_until(predicate, *, seconds: float = 15.0, interval: float = 0.05, what: str = ""):
    """Poll a sync or async predicate until it is truthy; fail the test on timeout."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_feeds(**kwargs):
    stop = asyncio.Event()
    task = asyncio.create_task(feeds_run_live(stop_event=stop, **kwargs))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@sync_to_async
def stored_trades(instrument: Instrument) -> list[tuple]:
    return [
        (trade_id, price, size, side)
        for trade_id, price, size, side in Trade.objects.filter(instrument=instrument)
        .order_by("ts", "id")
        .values_list("trade_id", "price", "size", "side")
    ]


def tape_rows(tape) -> list[tuple]:
    return [(str(t.id), float(t.price), float(t.qty), t.side) for t in tape]
