"""Normalised market events: the one vocabulary every feed (ccxt.pro or the simulator) speaks.

Feeds turn exchange-specific payloads into these records; storage, the live channel
layer and analytics only ever see these. Timestamps are integer milliseconds since the
Unix epoch (UTC), like the public API, so no timezone conversion happens on the hot path.
Symbols are ccxt's internal form ("BTC/USDT").
"""

from __future__ import annotations

from dataclasses import dataclass

BUY = "buy"
SELL = "sell"

Level = tuple[float, float]  # (price, size)


@dataclass(frozen=True, slots=True)
class TradeRecord:
    exchange: str
    symbol: str
    trade_id: str
    ts: int
    price: float
    size: float
    side: str  # aggressor side: "buy" or "sell"
    received_ts: int | None = None


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Top levels of an L2 book; bids best (highest) first, asks best (lowest) first.

    `exchange_ts` is the venue's own time for this state, or None when the venue sent
    none (Kraken's book snapshots, Binance's REST snapshot); `ts` is `exchange_ts` when
    known, else when we received it, so ordering and storage always have a time.
    """

    exchange: str
    symbol: str
    ts: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    seq: int | None = None
    exchange_ts: int | None = None


@dataclass(frozen=True, slots=True)
class TickerRecord:
    exchange: str
    symbol: str
    ts: int
    last: float
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    open_24h: float | None = None
    volume_24h: float | None = None  # in the base currency
    quote_volume_24h: float | None = None
    # The venue's time for this ticker, None when it sent none (Kraken); `ts` then is
    # when we received it. Same rule as BookUpdate.
    exchange_ts: int | None = None


@dataclass(frozen=True, slots=True)
class CandleRecord:
    """One 1-minute candle; `ts` is the minute's open time."""

    exchange: str
    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    buy_volume: float
    trade_count: int
    is_final: bool
