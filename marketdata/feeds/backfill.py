"""Backfill of trades and 1-minute candles through ccxt REST: chunked and resumable.

Each chunk (one REST page) is stored before the next is fetched, and the
cursor reached is remembered in the cache (Redis) under the job's key, so an
interrupted backfill continues where it stopped. Correctness never depends
on that cursor: inserts are idempotent, so a lost cursor only costs time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache

from marketdata.candles import candles_from_trades
from marketdata.feeds.base import FeedClient
from marketdata.feeds.config import exchange_config
from marketdata.feeds.repair import PAGE_LIMIT, SeenTrades
from marketdata.models import Instrument
from marketdata.records import TradeRecord
from marketdata.services import candles_upsert, trades_ingest
from quantsaas.db import database_sync_to_async
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, now_ms

logger = logging.getLogger(__name__)

CURSOR_TTL_SECONDS = 30 * 86_400
Progress = Callable[[int], None]


@dataclass
class BackfillResult:
    trades: int = 0
    candles: int = 0
    resumed_from: int | None = None


def _cursor_key(kind: str, instrument: Instrument, since_ms: int, until_ms: int) -> str:
    return f"md:backfill:{kind}:{instrument.pk}:{since_ms}:{until_ms}"


def time_parse_ms(value: str) -> int:
    """Epoch milliseconds or ISO 8601 (naive means UTC), as the API accepts them."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return dt_to_ms(parsed)


async def backfill_run(
    *,
    instrument: Instrument,
    since_ms: int,
    until_ms: int | None = None,
    client: FeedClient,
    kinds: tuple[str, ...] = ("candles", "trades"),
    progress: Progress | None = None,
) -> BackfillResult:
    """Backfill [since, until) for one instrument; `progress` gets the cursor (ms) per chunk.

    Candles first (cheap, long ranges), then trades: the trade chunks rebuild the
    candles of the minutes they cover, so stored candles end up agreeing with the tape.
    """
    until_ms = min(until_ms or now_ms(), now_ms())
    result = BackfillResult()
    if "candles" in kinds:
        try:
            await _candles(instrument, since_ms, until_ms, client, progress, result)
        except NotImplementedError:
            logger.info("%s has no REST candles; they are built from the trades", instrument)
    if "trades" in kinds:
        await _trades(instrument, since_ms, until_ms, client, progress, result)
    return result


async def _resume(key: str, since_ms: int, result: BackfillResult) -> int:
    cursor: int | None = await database_sync_to_async(cache.get)(key)
    if cursor is not None and cursor > since_ms:
        result.resumed_from = cursor
        logger.info("backfill resumes at %s", cursor)
        return cursor
    return since_ms


async def _candles(
    instrument: Instrument,
    since_ms: int,
    until_ms: int,
    client: FeedClient,
    progress: Progress | None,
    result: BackfillResult,
) -> None:
    key = _cursor_key("candles", instrument, since_ms, until_ms)
    cursor = await _resume(key, since_ms, result)
    while cursor < until_ms:
        candles = [
            c
            for c in await client.fetch_candles(instrument.ccxt_symbol, since=cursor)
            if c.ts < until_ms
        ]
        if not candles:
            break
        result.candles += await database_sync_to_async(candles_upsert)(candles=candles)
        cursor = candles[-1].ts + MINUTE_MS
        await database_sync_to_async(cache.set)(key, cursor, CURSOR_TTL_SECONDS)
        if progress:
            progress(cursor)


@database_sync_to_async
def _store_trades(trades: list[TradeRecord]) -> int:
    new = trades_ingest(records=trades)
    # Candles of the covered minutes, from exactly these (complete) pages of the tape.
    candles_upsert(candles=candles_from_trades(trades, final_before=now_ms()))
    return new


async def _trades(
    instrument: Instrument,
    since_ms: int,
    until_ms: int,
    client: FeedClient,
    progress: Progress | None,
    result: BackfillResult,
) -> None:
    config = exchange_config(instrument.exchange_id)
    key = _cursor_key("trades", instrument, since_ms, until_ms)
    cursor = await _resume(key, since_ms, result)
    seen = SeenTrades()
    pending: list[
        TradeRecord
    ] = []  # trades of a minute not complete yet (the page ended inside it)
    while cursor < until_ms:
        page = await client.fetch_trades(instrument.ccxt_symbol, since=cursor, limit=PAGE_LIMIT)
        fresh = [t for t in seen.fresh(page) if t.ts < until_ms]
        full = len(page) >= PAGE_LIMIT
        if full:
            newest = max(t.ts for t in page)
            next_cursor = newest if newest > cursor else cursor + 1
        elif config.fetch_trades_window_ms:
            next_cursor = cursor + config.fetch_trades_window_ms
        else:
            next_cursor = until_ms
        # Store whole minutes only, so each candle is built from all of its trades.
        boundary = min(next_cursor, until_ms)
        boundary -= boundary % MINUTE_MS if full else 0
        pending.extend(fresh)
        ready = [t for t in pending if t.ts < boundary]
        pending = [t for t in pending if t.ts >= boundary]
        if ready:
            result.trades += await _store_trades(ready)
        cursor = next_cursor
        await database_sync_to_async(cache.set)(key, min(cursor, boundary), CURSOR_TTL_SECONDS)
        if progress:
            progress(min(cursor, until_ms))
    if pending:
        result.trades += await _store_trades(pending)
    await database_sync_to_async(cache.set)(key, until_ms, CURSOR_TTL_SECONDS)
