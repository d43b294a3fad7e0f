"""Celery jobs of market data: backfill, candle roll-ups (finalisation) and retention.

Tasks take ids and plain values (JSON), never model instances, and call the
same services the feed runner and the management commands use.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TypedDict

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from marketdata.feeds.backfill import BackfillResult, backfill_run
from marketdata.feeds.runner import ClientFactory
from marketdata.models import Candle1m, Instrument
from marketdata.services import book_snapshots_prune, candles_rebuild, trades_prune
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, now_ms

logger = logging.getLogger(__name__)


class BackfillCounts(TypedDict):
    trades: int
    candles: int


class RetentionCounts(TypedDict):
    trades: int
    book_snapshots: int


# Days of history kept; 0 keeps everything. Operators set them in settings/env.


@shared_task(acks_late=True)
def backfill_task(
    instrument_id: int, since_ms: int, until_ms: int | None = None, kinds: list[str] | None = None
) -> BackfillCounts:
    """Backfill one instrument's [since, until); resumable, so a retried task continues."""
    instrument = Instrument.objects.select_related("exchange").get(pk=instrument_id)

    async def run() -> BackfillResult:
        factory = ClientFactory()
        client = await factory(instrument.exchange_id)
        async with client:
            return await backfill_run(
                instrument=instrument,
                since_ms=since_ms,
                until_ms=until_ms,
                client=client,
                kinds=tuple(kinds or ("candles", "trades")),
            )

    result = asyncio.run(run())
    return {"trades": result.trades, "candles": result.candles}


@shared_task
def candles_finalize(grace_minutes: int = 2) -> int:
    """Roll up: rebuild from the stored tape every past minute still marked open.

    The live runner finalises minutes as it goes; this catches the ones it could not
    (a restart at the minute's end, a quiet market), so history is always final.
    """
    cutoff = timezone.now() - timedelta(minutes=grace_minutes)
    rebuilt = 0
    open_minutes = (
        Candle1m.objects.filter(is_final=False, ts__lt=cutoff)
        .values_list("instrument_id", "ts")
        .order_by("instrument_id", "ts")
    )
    spans: dict[int, tuple[int, int]] = {}
    for instrument_id, ts in open_minutes:
        ms = dt_to_ms(ts)
        low, high = spans.get(instrument_id, (ms, ms))
        spans[instrument_id] = (min(low, ms), max(high, ms))
    for instrument in Instrument.objects.filter(pk__in=spans):
        low, high = spans[instrument.pk]
        rebuilt += candles_rebuild(
            instrument=instrument,
            start_ms=low,
            end_ms=high + MINUTE_MS,
            final_before=now_ms() - grace_minutes * MINUTE_MS,
        )
    return rebuilt


@shared_task
def marketdata_retention() -> RetentionCounts:
    """Delete trades and book snapshots older than their retention (bounded batches)."""
    now = timezone.now()
    deleted: RetentionCounts = {"trades": 0, "book_snapshots": 0}
    trade_days, book_days = (
        settings.MARKETDATA_TRADE_RETENTION_DAYS,
        settings.MARKETDATA_BOOK_RETENTION_DAYS,
    )
    if trade_days:
        deleted["trades"] = trades_prune(before=now - timedelta(days=trade_days))
    if book_days:
        deleted["book_snapshots"] = book_snapshots_prune(before=now - timedelta(days=book_days))
    logger.info("market data retention: %s", deleted)
    return deleted
