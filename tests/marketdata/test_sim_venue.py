"""The simulated exchange behaves like a real venue: one market, whenever you look at it.

The market is a function of (seed, instrument, time): a feed that starts late (a
restart) continues the same market, and the REST history that gap repair and
`manage.py backfill` read regenerates exactly what the live feed printed.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from django.core.management import call_command

from marketdata.feeds.sim_client import SimFeedClient, SimHub
from marketdata.models import Instrument, Trade
from marketdata.records import TradeRecord
from marketdata.sim import DEFAULT_INSTRUMENTS, SimExchange
from marketdata.sim.anchors import SEGMENT_MS
from marketdata.sim.history import sim_history
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, ms_to_dt, now_ms

START = 1_764_000_000_000  # a whole minute (and a segment boundary)
BTC = DEFAULT_INSTRUMENTS[0]


def _trades(events) -> list[TradeRecord]:
    return [e for e in events if isinstance(e, TradeRecord)]


def test_a_feed_started_later_prints_the_same_trades_as_one_that_ran_through():
    end = START + 2 * SEGMENT_MS + 30_000
    through = _trades(SimExchange(seed=4, start_ms=START).advance(end))
    for restart in (START + 123_456, START + SEGMENT_MS, START + SEGMENT_MS + 599_950):
        late = _trades(SimExchange(seed=4, start_ms=restart).advance(end))

        assert late, restart
        assert late == [t for t in through if t.ts >= restart - restart % 100], restart


def test_a_restarted_market_stands_where_it_was_not_at_the_opening_price():
    later = START + 7 * 86_400_000 + 1_234_500  # a week on, mid-segment
    first = _trades(SimExchange(seed=0, start_ms=later).advance(later + 60_000))
    again = _trades(SimExchange(seed=0, start_ms=later - 300_000).advance(later + 60_000))

    assert [t for t in again if t.ts >= later] == first
    assert first[0].price != BTC.price


def test_prices_join_up_where_segments_meet():
    sim = SimExchange(seed=2, start_ms=START, instruments=(BTC,))
    trades = _trades(sim.advance(START + 6 * SEGMENT_MS, books=False, tickers=False))
    for boundary in range(START + SEGMENT_MS, START + 6 * SEGMENT_MS, SEGMENT_MS):
        before = [t.price for t in trades if boundary - 10_000 <= t.ts < boundary]
        after = [t.price for t in trades if boundary <= t.ts < boundary + 10_000]
        # A boundary looks like any other 10 seconds: no jump back to a reference price.
        assert abs(after[0] / before[-1] - 1) < 0.002, boundary


def test_trade_ids_are_the_same_in_every_process_and_unique():
    _, trades = sim_history(minutes=25, seed=6, end_ms=START)
    _, again = sim_history(minutes=5, seed=6, end_ms=START)

    assert [t.trade_id for t in again] == [t.trade_id for t in trades[-len(again) :]]
    ids = [(t.symbol, t.trade_id) for t in trades]
    assert len(set(ids)) == len(ids)


async def test_a_restarted_feed_reads_back_through_rest_what_the_live_feed_printed():
    hub = SimHub(seed=3, speed=1.0)
    live = SimFeedClient(hub)
    printed: list[TradeRecord] = []
    try:
        while len(printed) < 8:
            printed.extend(await asyncio.wait_for(live.watch_trades("BTC/USD"), 10))
    finally:
        await live.close()
        await hub.close()

    restarted = SimHub(seed=3, speed=1.0)  # a new process: nothing in memory
    history = await SimFeedClient(restarted).fetch_trades("BTC/USD", since=printed[0].ts)

    assert [(t.trade_id, t.ts, t.price, t.size, t.side) for t in history[: len(printed)]] == [
        (t.trade_id, t.ts, t.price, t.size, t.side) for t in printed
    ]


@pytest.mark.django_db(transaction=True)
def test_backfill_of_a_past_range_stores_exactly_the_trades_the_feed_printed():
    instrument = Instrument.objects.get(exchange_id="sim", ccxt_symbol="BTC/USD")
    end = now_ms() - 10 * MINUTE_MS
    end -= end % MINUTE_MS
    since = end - 12 * MINUTE_MS
    _, expected = sim_history(minutes=12, seed=0, end_ms=end, instruments=(BTC,))

    out = io.StringIO()
    call_command(
        "backfill",
        exchange="sim",
        symbol="BTC-USD",
        since=str(since),
        until=str(end),
        kind="trades",
        stdout=out,
        stderr=io.StringIO(),
    )
    call_command(  # again: nothing new, nothing duplicated
        "backfill",
        exchange="sim",
        symbol="BTC-USD",
        since=str(since - 60_000),
        until=str(end),
        kind="trades",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    stored = [
        (trade_id, dt_to_ms(ts), price, size, side)
        for trade_id, ts, price, size, side in Trade.objects.filter(
            instrument=instrument, ts__lt=ms_to_dt(end), ts__gte=ms_to_dt(since)
        )
        .order_by("ts", "trade_id")
        .values_list("trade_id", "ts", "price", "size", "side")
    ]
    assert f"{len(expected)} new trades" in out.getvalue()
    assert stored == sorted(
        ((t.trade_id, t.ts, t.price, t.size, t.side) for t in expected),
        key=lambda row: (row[1], row[0]),
    )
