"""Storing market data: idempotent trade ingest, candles, books, tickers, retention."""

from __future__ import annotations

import pytest

from marketdata.candles import INTERVALS_MS, candles_from_trades
from marketdata.models import BookSnapshot, Candle1m, Instrument, Ticker, Trade
from marketdata.records import TradeRecord
from marketdata.selectors import book_latest, candles_between, ticker_latest
from marketdata.services import (
    book_snapshot_write,
    candles_rebuild,
    candles_upsert,
    tickers_upsert,
    trades_ingest,
    trades_prune,
)
from marketdata.sim import DEFAULT_INSTRUMENTS
from marketdata.sim.history import sim_history
from quantsaas.timeutil import dt_to_ms, ms_to_dt

pytestmark = pytest.mark.django_db
END = 1_764_007_200_000  # 2025-11-24T18:00:00Z, a whole hour
BTC = DEFAULT_INSTRUMENTS[0]


@pytest.fixture
def tape() -> list[TradeRecord]:
    _, trades = sim_history(minutes=10, seed=21, end_ms=END, instruments=(BTC,))
    return trades


def _stored() -> list[tuple[str, int, float, float, str]]:
    rows = Trade.objects.order_by("ts", "id").values_list("trade_id", "ts", "price", "size", "side")
    return [(tid, dt_to_ms(ts), price, size, side) for tid, ts, price, size, side in rows]


def _expected(trades) -> list[tuple[str, int, float, float, str]]:
    return [(t.trade_id, t.ts, t.price, t.size, t.side) for t in trades]


def test_same_batch_twice_is_stored_once(tape):
    assert trades_ingest(records=tape) == len(tape)
    assert trades_ingest(records=tape) == 0

    assert _stored() == _expected(tape)


def test_overlapping_batches_store_every_trade_exactly_once(tape):
    third = len(tape) // 3
    first, second = tape[: 2 * third], tape[third:]

    assert trades_ingest(records=first) == 2 * third
    assert trades_ingest(records=second) == len(tape) - 2 * third
    assert _stored() == _expected(tape)


def test_duplicates_inside_one_batch_are_dropped(tape):
    assert trades_ingest(records=tape[:50] + tape[:50]) == 50
    assert Trade.objects.count() == 50


def test_trades_of_unknown_markets_are_dropped_and_the_rest_stored(tape):
    stranger = TradeRecord("sim", "DOGE/USD", "1", END, 0.1, 10.0, "buy")

    assert trades_ingest(records=[stranger, *tape[:10]]) == 10


def test_exchange_and_receive_times_are_kept_to_the_millisecond():
    trade = TradeRecord("sim", "BTC/USD", "abc", END + 123, 65000.5, 0.01, "sell", END + 180)
    trades_ingest(records=[trade])

    stored = Trade.objects.get()
    assert dt_to_ms(stored.ts) == END + 123
    assert dt_to_ms(stored.received_ts) == END + 180


def test_candles_rebuilt_from_stored_trades_equal_those_from_the_tape(tape):
    trades_ingest(records=tape)
    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")

    written = candles_rebuild(
        instrument=instrument, start_ms=END - 600_000, end_ms=END, final_before=END
    )

    reference = candles_from_trades(tape, final_before=END)
    assert written == len(reference) == 10
    stored = Candle1m.objects.filter(instrument=instrument).order_by("ts")
    for candle, ref in zip(stored, reference, strict=True):
        assert dt_to_ms(candle.ts) == ref.ts
        assert (candle.open, candle.high, candle.low, candle.close) == (
            ref.open,
            ref.high,
            ref.low,
            ref.close,
        )
        assert candle.volume == pytest.approx(ref.volume)
        assert candle.trade_count == ref.trade_count
        assert candle.is_final


def test_candle_upsert_overwrites_the_minute():
    trades = [
        TradeRecord("sim", "BTC/USD", "1", END, 100.0, 1.0, "buy"),
        TradeRecord("sim", "BTC/USD", "2", END + 10, 101.0, 1.0, "sell"),
    ]
    candles_upsert(candles=candles_from_trades(trades[:1], final_before=END))
    candles_upsert(candles=candles_from_trades(trades, final_before=END + 60_000))

    candle = Candle1m.objects.get()
    assert (candle.open, candle.high, candle.close, candle.trade_count) == (100.0, 101.0, 101.0, 2)
    assert candle.buy_volume == 1.0 and candle.is_final


def _reference_buckets(trades: list[TradeRecord], interval_ms: int) -> list[tuple]:
    buckets: dict[int, list[TradeRecord]] = {}
    for t in sorted(trades, key=lambda t: t.ts):  # stable: tape order within a millisecond
        buckets.setdefault(t.ts - t.ts % interval_ms, []).append(t)
    return [
        (
            ts,
            group[0].price,
            max(t.price for t in group),
            min(t.price for t in group),
            group[-1].price,
            sum(t.size for t in group),
            len(group),
        )
        for ts, group in sorted(buckets.items())
    ]


def test_sql_candle_aggregation_matches_a_python_reference_for_every_interval():
    # Over four hours ending off the hour, so 1h and 4h buckets are partial at both ends.
    end = END + 17 * 60_000
    _, trades = sim_history(minutes=260, seed=5, end_ms=end, instruments=(BTC,))
    trades_ingest(records=trades)
    candles_upsert(candles=candles_from_trades(trades, final_before=end))
    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")

    for interval, interval_ms in INTERVALS_MS.items():
        rows = candles_between(
            instrument=instrument, interval=interval, start_ms=0, end_ms=end + 1, limit=1000
        )

        reference = _reference_buckets(trades, interval_ms)
        assert [row[0] for row in rows] == [ref[0] for ref in reference], interval
        for row, ref in zip(rows, reference, strict=True):
            ts, o, h, low, c, v, _, n, final = row
            assert ts % interval_ms == 0  # UTC-aligned
            assert (o, h, low, c, n) == (ref[1], ref[2], ref[3], ref[4], ref[6]), interval
            assert v == pytest.approx(ref[5])
            assert final


def test_book_snapshot_and_ticker_are_read_back():
    sim, _ = sim_history(minutes=1, seed=1, end_ms=END)
    book = sim.book("ETH/USD")
    book_snapshot_write(update=book, depth=5)
    tickers_upsert(records=[sim.ticker("ETH/USD")])
    instrument = Instrument.objects.get(exchange_id="sim", symbol="ETH-USD")

    stored = book_latest(instrument=instrument)
    assert stored.ts == END
    assert [list(level) for level in stored.bids] == [list(level) for level in book.bids[:5]]
    assert ticker_latest(instrument=instrument).last == sim.ticker("ETH/USD").last
    assert BookSnapshot.objects.count() == 1 and Ticker.objects.count() == 1


def test_retention_deletes_only_trades_older_than_the_cutoff(tape):
    trades_ingest(records=tape)
    cutoff = ms_to_dt(END - 300_000)

    deleted = trades_prune(before=cutoff, batch_size=100)

    assert deleted == sum(1 for t in tape if t.ts < END - 300_000)
    assert not Trade.objects.filter(ts__lt=cutoff).exists()
    assert Trade.objects.filter(ts__gte=cutoff).count() == len(tape) - deleted
