"""Batched, idempotent trade persistence for the feed runner.

Streams hand trades to the writer and return at once; a flush loop stores
them in batches (COPY + ON CONFLICT DO NOTHING in ``trades_ingest``) on one
database thread, then rebuilds the 1-minute candles those trades touched, so
candles always agree with the stored tape. A failed flush keeps its batch and
retries: a database restart costs latency, not trades. An outage longer than
the buffer holds (``FEED_WRITER_MAX_BUFFERED`` trades) drops the oldest trades;
their time ranges are recorded and backfilled from REST once the database is
back (``outage.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from django.conf import settings

from marketdata.feeds.base import FeedClient
from marketdata.feeds.outage import dropped_ranges_record, dropped_ranges_repair, ranges_merge
from marketdata.models import Instrument
from marketdata.records import TradeRecord
from marketdata.services import candles_rebuild, trades_ingest
from quantsaas.db import database_sync_to_async, in_db_thread
from quantsaas.timeutil import MINUTE_MS

logger = logging.getLogger(__name__)

MAX_BUFFERED = 500_000


class TradeWriter:
    def __init__(
        self,
        *,
        instruments: dict[tuple[str, str], Instrument],
        flush_interval: float = 0.2,
        max_batch: int = 20_000,
        candle_interval: float = 1.0,
        max_buffered: int | None = None,
        client_for: Callable[[str], Awaitable[FeedClient]] | None = None,
    ) -> None:
        self.instruments = instruments
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.candle_interval = candle_interval
        configured: int = getattr(settings, "FEED_WRITER_MAX_BUFFERED", MAX_BUFFERED)
        self.max_buffered = max_buffered or configured
        self.client_for = client_for
        self.dropped = 0
        self._drops: dict[tuple[str, str], list[tuple[int, int]]] = {}  # not yet recorded
        # Ranges left by an earlier run are repaired at the first successful flush.
        self._repair_due = True
        self._repair_task: asyncio.Task[None] | None = None
        self.buffer: list[TradeRecord] = []
        self.stored = 0
        self._touched: dict[tuple[str, str], tuple[int, int]] = {}
        self._open_minute: dict[tuple[str, str], int] = {}
        self._wake = asyncio.Event()

    def add(self, records: list[TradeRecord]) -> None:
        self.buffer.extend(records)
        self._bound()
        if len(self.buffer) >= self.max_batch:
            self._wake.set()

    def _bound(self) -> None:
        """Drop the oldest trades beyond the buffer's size, noting their time ranges.

        Only reachable when the database has been down for a long time: the process stays
        alive, and the dropped ranges are backfilled once it is back. A batch in flight is
        outside the buffer, so this never removes trades a flush is storing.
        """
        if len(self.buffer) <= self.max_buffered:
            return
        dropped = len(self.buffer) - self.max_buffered
        self._drop_note(self.buffer[:dropped])
        del self.buffer[:dropped]
        self.dropped += dropped
        logger.error("trade buffer full: dropped %d oldest trades", dropped)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_candles = loop.time() + self.candle_interval
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self.flush()
            if loop.time() >= next_candles:
                await self.candles_flush()
                next_candles = loop.time() + self.candle_interval
        await self.flush()
        await self.candles_flush()
        if self._repair_task is not None:
            # Cut short on shutdown: the range stays recorded, the next run repairs it.
            self._repair_task.cancel()
            await self.repair_wait()

    def _drop_note(self, dropped: list[TradeRecord]) -> None:
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for t in dropped:
            low, high = spans.get((t.exchange, t.symbol), (t.ts, t.ts))
            spans[(t.exchange, t.symbol)] = (min(low, t.ts), max(high, t.ts))
        for key, (low, high) in spans.items():
            self._drops[key] = ranges_merge([*self._drops.get(key, []), (low, high + 1)])
        self._repair_due = True

    async def _drops_record(self) -> None:
        """Write the noted ranges to Redis; kept in memory until that succeeds."""
        for key in list(self._drops):
            try:
                await in_db_thread(dropped_ranges_record)(
                    exchange=key[0], symbol=key[1], ranges=self._drops[key]
                )
            except Exception:
                logger.exception("recording dropped trades of %s failed; will retry", key)
                return
            del self._drops[key]

    def _repair_start(self) -> None:
        """Backfill recorded ranges, once the database took a flush again."""
        client_for = self.client_for
        if self._drops or not self._repair_due or client_for is None:
            return
        if self._repair_task is not None and not self._repair_task.done():
            return
        self._repair_due = False

        async def repair() -> None:
            try:
                await dropped_ranges_repair(
                    instruments=list(self.instruments.values()), client_for=client_for
                )
            except Exception:
                self._repair_due = True  # tried again after the next successful flush
                logger.exception("backfilling dropped trades failed; will retry")

        self._repair_task = asyncio.ensure_future(repair())

    async def repair_wait(self) -> None:
        if self._repair_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._repair_task

    async def flush(self) -> int:
        """Store everything buffered; returns the number of new trades."""
        if self._drops:
            await self._drops_record()
        stored = 0
        while self.buffer:
            # Out of the buffer while in flight: trades added meanwhile may overflow it, and
            # the oldest dropped must be the buffer's, not this batch's or its successors'.
            batch = self.buffer[: self.max_batch]
            del self.buffer[: len(batch)]
            try:
                new = await _ingest(batch)
            except Exception:
                logger.exception("storing %d trades failed; will retry", len(batch))
                self.buffer[:0] = batch
                self._bound()
                await asyncio.sleep(1.0)
                return stored
            stored += new
            self._touch(batch)
        self.stored += stored
        self._repair_start()
        return stored

    def _touch(self, batch: list[TradeRecord]) -> None:
        for t in batch:
            key = (t.exchange, t.symbol)
            low, high = self._touched.get(key, (t.ts, t.ts))
            self._touched[key] = (min(low, t.ts), max(high, t.ts))

    async def candles_flush(self) -> None:
        touched, self._touched = self._touched, {}
        for key, (low, high) in touched.items():
            instrument = self.instruments.get(key)
            if instrument is None:
                continue
            # Include the minute left open last time, so it is rewritten as final.
            start = min(low, self._open_minute.get(key, low))
            try:
                await _rebuild(instrument, start, high + 1)
            except Exception:
                logger.exception("candle rebuild for %s failed", instrument)
                continue
            self._open_minute[key] = high - high % MINUTE_MS


@database_sync_to_async
def _ingest(batch: list[TradeRecord]) -> int:
    return trades_ingest(records=batch)


@database_sync_to_async
def _rebuild(instrument: Instrument, start: int, end: int) -> int:
    return candles_rebuild(instrument=instrument, start_ms=start, end_ms=end)
