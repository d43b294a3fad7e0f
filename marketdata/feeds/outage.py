"""Trades the writer had to drop while PostgreSQL was away, and their repair from REST.

The writer buffers trades while the database is unreachable. When the buffer is
full it drops the oldest trades; their time range per instrument is recorded
here, durably, in Redis (the Django cache, no expiry), so neither a longer
outage nor a runner restart loses the fact that a hole exists. As soon as a
flush succeeds again, each recorded range is backfilled from the venue's REST
history (``backfill_run``; inserts are idempotent, so overlap is harmless) and
then forgotten. A range is only removed after its backfill completed.

Without Redis (the embedded mode of ``make run``) the cache lives in the
process: ranges survive the outage but not a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from django.core.cache import cache

from marketdata.feeds.base import FeedClient
from marketdata.models import Instrument
from quantsaas.db import database_sync_to_async

logger = logging.getLogger(__name__)

Range = tuple[int, int]  # [start_ms, end_ms), trade times


def _key(exchange: str, symbol: str) -> str:
    return f"md:dropped:{exchange}:{symbol}"


def ranges_merge(ranges: list[Range]) -> list[Range]:
    """Overlapping or touching ranges as one, sorted."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def dropped_ranges_record(*, exchange: str, symbol: str, ranges: list[Range]) -> None:
    """Add `ranges` to the instrument's recorded holes (one runner owns an instrument)."""
    key = _key(exchange, symbol)
    stored = [tuple(r) for r in cache.get(key) or []]
    cache.set(key, ranges_merge([*stored, *ranges]), None)


def dropped_ranges_get(*, exchange: str, symbol: str) -> list[Range]:
    return [tuple(r) for r in cache.get(_key(exchange, symbol)) or []]


def dropped_range_done(*, exchange: str, symbol: str, done: Range) -> None:
    """Forget a repaired range (ranges recorded meanwhile are kept)."""
    key = _key(exchange, symbol)
    left = [tuple(r) for r in cache.get(key) or [] if tuple(r) != tuple(done)]
    if left:
        cache.set(key, left, None)
    else:
        cache.delete(key)


async def dropped_ranges_repair(
    *,
    instruments: list[Instrument],
    client_for: Callable[[str], Awaitable[FeedClient]],
) -> int:
    """Backfill every recorded range of `instruments` from REST; returns trades stored."""
    from marketdata.feeds.backfill import backfill_run

    stored = 0
    for instrument in instruments:
        exchange, symbol = instrument.exchange_id, instrument.ccxt_symbol
        ranges = await database_sync_to_async(dropped_ranges_get)(exchange=exchange, symbol=symbol)
        for start, end in ranges:
            logger.warning(
                "%s %s: backfilling dropped trades [%d, %d)", exchange, symbol, start, end
            )
            client = await client_for(exchange)
            async with client:
                result = await backfill_run(
                    instrument=instrument,
                    since_ms=start,
                    until_ms=end,
                    client=client,
                    kinds=("trades",),
                )
            stored += result.trades
            await database_sync_to_async(dropped_range_done)(
                exchange=exchange, symbol=symbol, done=(start, end)
            )
            logger.info("%s %s: %d dropped trades recovered", exchange, symbol, result.trades)
    return stored
