"""Candle arithmetic: 1-minute candles from trades, and the intervals served by the API.

Every interval divides a UTC day and the Unix epoch starts at midnight UTC, so a
bucket's open time is simply `ts - ts % interval`: UTC-aligned without calendars, and
the same integer expression works in PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from marketdata.records import BUY, CandleRecord, TradeRecord
from quantsaas.timeutil import MINUTE_MS

INTERVALS_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}


class _Minute(TypedDict):
    """One minute's candle while it is being built from trades."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    trade_count: int


def candles_from_trades(
    trades: Iterable[TradeRecord], *, final_before: int | None = None
) -> list[CandleRecord]:
    """Aggregate trades into 1-minute candles, per instrument, in time order.

    Trades are ordered by (ts, input position) so that open and close are the first and
    last prints of the minute. A candle is final when its minute ends at or before
    `final_before` (ms); with None every candle is final (closed history).
    """
    ordered = sorted(enumerate(trades), key=lambda pair: (pair[1].ts, pair[0]))
    candles: dict[tuple[str, str, int], _Minute] = {}
    for _, trade in ordered:
        minute = trade.ts - trade.ts % MINUTE_MS
        key = (trade.exchange, trade.symbol, minute)
        candle = candles.get(key)
        buy = trade.size if trade.side == BUY else 0.0
        if candle is None:
            candles[key] = {
                "open": trade.price,
                "high": trade.price,
                "low": trade.price,
                "close": trade.price,
                "volume": trade.size,
                "buy_volume": buy,
                "trade_count": 1,
            }
            continue
        candle["high"] = max(candle["high"], trade.price)
        candle["low"] = min(candle["low"], trade.price)
        candle["close"] = trade.price
        candle["volume"] += trade.size
        candle["buy_volume"] += buy
        candle["trade_count"] += 1
    return [
        CandleRecord(
            exchange=exchange,
            symbol=symbol,
            ts=minute,
            is_final=final_before is None or minute + MINUTE_MS <= final_before,
            **values,
        )
        for (exchange, symbol, minute), values in sorted(
            candles.items(), key=lambda item: (item[0][0], item[0][1], item[0][2])
        )
    ]
