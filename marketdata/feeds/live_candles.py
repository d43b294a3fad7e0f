"""The open 1-minute candle per instrument, kept in the cache (Redis) for snapshots.

Same pattern as marketdata.live for books and tickers: a WebSocket subscription
to ``candles_1m`` starts from this, and it expires when the feed stops.
"""

from __future__ import annotations

from django.core.cache import cache

LIVE_CANDLE_TTL_SECONDS = 120


def _key(exchange: str, symbol: str) -> str:
    return f"md:live:candle:{exchange}:{symbol}"


def live_candle_put(*, exchange: str, symbol: str, candle: dict) -> None:
    cache.set(_key(exchange, symbol), candle, LIVE_CANDLE_TTL_SECONDS)


def live_candle_get(*, exchange: str, symbol: str) -> dict | None:
    """The open minute in the public shape (ts, open, high, low, close, volume, is_final)."""
    return cache.get(_key(exchange, symbol))
