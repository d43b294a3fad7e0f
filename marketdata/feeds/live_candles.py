"""The open 1-minute candle per instrument, kept in the cache (Redis) for snapshots.

Same pattern as marketdata.live for books and tickers: a WebSocket subscription
to ``candles_1m`` starts from this, and it expires when the feed stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import cache

if TYPE_CHECKING:
    from marketdata.feeds.publish import CandlePayload

LIVE_CANDLE_TTL_SECONDS = 120


def _key(exchange: str, symbol: str) -> str:
    return f"md:live:candle:{exchange}:{symbol}"


def live_candle_put(*, exchange: str, symbol: str, candle: CandlePayload) -> None:
    cache.set(_key(exchange, symbol), candle, LIVE_CANDLE_TTL_SECONDS)


def live_candle_get(*, exchange: str, symbol: str) -> CandlePayload | None:
    """The open minute in the public shape (ts, open, high, low, close, volume, is_final)."""
    candle: CandlePayload | None = cache.get(_key(exchange, symbol))
    return candle
