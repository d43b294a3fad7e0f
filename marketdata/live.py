"""The latest book and ticker per instrument, kept in the cache (Redis in production).

The feed runner writes here on every update so that REST reads and WebSocket snapshots
are fresh without a database write per book change; the database keeps only periodic
snapshots. Entries expire so a dead feed cannot serve a stale book as if it were live.
"""

from __future__ import annotations

from dataclasses import asdict

from django.core.cache import cache

from marketdata.records import BookUpdate, TickerRecord

LIVE_TTL_SECONDS = 60


def _key(kind: str, exchange: str, symbol: str) -> str:
    return f"md:live:{kind}:{exchange}:{symbol}"


def live_book_put(*, update: BookUpdate) -> None:
    cache.set(_key("book", update.exchange, update.symbol), asdict(update), LIVE_TTL_SECONDS)


def live_book_get(*, exchange: str, symbol: str) -> BookUpdate | None:
    data = cache.get(_key("book", exchange, symbol))
    if data is None:
        return None
    data["bids"] = tuple(tuple(level) for level in data["bids"])
    data["asks"] = tuple(tuple(level) for level in data["asks"])
    return BookUpdate(**data)


def live_ticker_put(*, record: TickerRecord) -> None:
    cache.set(_key("ticker", record.exchange, record.symbol), asdict(record), LIVE_TTL_SECONDS)


def live_ticker_get(*, exchange: str, symbol: str) -> TickerRecord | None:
    data = cache.get(_key("ticker", exchange, symbol))
    return None if data is None else TickerRecord(**data)
