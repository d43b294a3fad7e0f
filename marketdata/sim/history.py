"""Simulated history: a fast tape for demo data and tests, and a loader that stores it."""

from __future__ import annotations

from marketdata.candles import candles_from_trades
from marketdata.records import TradeRecord
from marketdata.services import book_snapshot_write, candles_upsert, tickers_upsert, trades_ingest
from marketdata.sim.market import SimExchange
from marketdata.sim.params import DEFAULT_INSTRUMENTS, InstrumentParams
from quantsaas.timeutil import MINUTE_MS, now_ms

INGEST_BATCH = 5_000
SNAPSHOT_EVERY_MS = 30_000  # a stored book every half minute: delayed views have bid and ask


def sim_history(
    *,
    minutes: int,
    seed: int = 0,
    end_ms: int | None = None,
    instruments: tuple[InstrumentParams, ...] = DEFAULT_INSTRUMENTS,
) -> tuple[SimExchange, list[TradeRecord]]:
    """Run the simulator over the `minutes` before `end_ms` (default: the current minute).

    Returns the simulator (for its final book, ticker and episodes) and the trades: the
    very trades (ids included) the live feed prints over that range.
    """
    if end_ms is None:
        end_ms = now_ms()
        end_ms -= end_ms % MINUTE_MS
    sim = SimExchange(
        seed=seed,
        start_ms=end_ms - minutes * MINUTE_MS,
        instruments=instruments,
    )
    trades = sim.advance_trades(end_ms)
    return sim, trades


def sim_history_load(
    *, minutes: int, seed: int = 0, end_ms: int | None = None, books: bool = False
) -> int:
    """Store simulated history (trades, 1-minute candles, final book and ticker).

    With `books`, also a book snapshot every SNAPSHOT_EVERY_MS, so a delayed plan sees
    bid and ask as they stood at its cutoff (what a product running for a while holds).
    Idempotent: loading the same seed and window twice, or a window the live feed already
    stored, stores nothing new. Returns the number of new trades.
    """
    trades: list[TradeRecord]
    if not books:
        sim, trades = sim_history(minutes=minutes, seed=seed, end_ms=end_ms)
    else:
        end = now_ms() if end_ms is None else end_ms
        start = end - minutes * MINUTE_MS
        sim = SimExchange(seed=seed, start_ms=start, instruments=DEFAULT_INSTRUMENTS)
        trades = []
        for t in range(start + SNAPSHOT_EVERY_MS, end + 1, SNAPSHOT_EVERY_MS):
            trades += sim.advance_trades(t)
            for symbol in sim.symbols:
                book_snapshot_write(update=sim.book(symbol))
    stored = 0
    for i in range(0, len(trades), INGEST_BATCH):
        stored += trades_ingest(records=trades[i : i + INGEST_BATCH])
    candles_upsert(candles=candles_from_trades(trades, final_before=sim.now_ms))
    for symbol in sim.symbols:
        book_snapshot_write(update=sim.book(symbol))
    tickers_upsert(records=[sim.ticker(symbol) for symbol in sim.symbols])
    return stored
