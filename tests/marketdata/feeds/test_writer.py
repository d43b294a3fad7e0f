"""The trade writer under a slow or failing database, on the real PostgreSQL.

A second connection holds an EXCLUSIVE lock on the trades table, so the writer's batch
really is in flight (blocked in PostgreSQL) while the feed keeps adding trades.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from django.core.cache import cache
from django.db import connection

from marketdata.feeds.outage import dropped_ranges_get
from marketdata.feeds.writer import TradeWriter
from marketdata.models import Exchange, Instrument, Trade
from marketdata.records import TradeRecord

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_790_000_000_000


@pytest.fixture
def btc():
    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Sim"})
    return Instrument.objects.update_or_create(
        exchange=exchange,
        ccxt_symbol="BTC/USD",
        defaults={"base": "BTC", "quote": "USD", "price_precision": 1, "size_precision": 1},
    )[0]


def _trades(first: int, count: int) -> list[TradeRecord]:
    return [
        TradeRecord("sim", "BTC/USD", f"w{i}", T0 + i, 100.0 + i, 1.0, "buy")
        for i in range(first, first + count)
    ]


def _lock_trades_table() -> psycopg.Connection:
    settings = connection.settings_dict
    held = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        password=settings["PASSWORD"] or None,
    )
    held.execute("LOCK TABLE marketdata_trade IN EXCLUSIVE MODE")
    return held


def _stored_ids(instrument: Instrument) -> list[str]:
    return list(
        Trade.objects.filter(instrument=instrument)
        .order_by("ts")
        .values_list("trade_id", flat=True)
    )


@pytest.fixture(autouse=True)
def no_recorded_ranges():
    cache.delete("md:dropped:sim:BTC/USD")
    yield
    cache.delete("md:dropped:sim:BTC/USD")


async def test_trades_added_while_a_batch_is_in_flight_are_stored_or_recorded_as_dropped(btc):
    writer = TradeWriter(instruments={("sim", "BTC/USD"): btc}, max_buffered=10)
    writer.add(_trades(0, 10))
    held = await asyncio.to_thread(_lock_trades_table)
    try:
        flushing = asyncio.ensure_future(writer.flush())
        await asyncio.sleep(0.5)  # the first ten are in flight, blocked on the lock
        assert not flushing.done()
        writer.add(_trades(10, 15))  # five more than the buffer holds
    finally:
        await asyncio.to_thread(held.rollback)
        await asyncio.to_thread(held.close)
    await flushing
    await writer.flush()

    stored = await asyncio.to_thread(_stored_ids, btc)
    # The batch in flight was stored; the buffer dropped its own five oldest, and exactly
    # those are the range recorded for backfill. Nothing vanished without a record.
    assert stored == [f"w{i}" for i in range(25) if not 10 <= i < 15]
    assert writer.dropped == 5
    recorded = await asyncio.to_thread(dropped_ranges_get, exchange="sim", symbol="BTC/USD")
    assert recorded == [(T0 + 10, T0 + 15)]
