"""Batched, idempotent trade persistence for the feed runner.

Streams hand trades to the writer and return at once; a flush loop stores
them in batches (COPY + ON CONFLICT DO NOTHING in ``trades_ingest``) on one
database thread, then rebuilds the 1-minute candles those trades touched, so
candles always agree with the stored tape. A failed flush keeps its batch and
retries: a database restart costs latency, not trades.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from marketdata.models import Instrument
from marketdata.records import TradeRecord
from marketdata.services import candles_rebuild, trades_ingest
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
    ) -> None:
        self.instruments = instruments
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.candle_interval = candle_interval
        self.buffer: list[TradeRecord] = []
        self.stored = 0
        self._touched: dict[tuple[str, str], tuple[int, int]] = {}
        self._open_minute: dict[tuple[str, str], int] = {}
        self._wake = asyncio.Event()

    def add(self, records: list[TradeRecord]) -> None:
        self.buffer.extend(records)
        if len(self.buffer) > MAX_BUFFERED:
            # Only reachable when the database has been down for a long time; the dropped
            # trades are re-fetched by gap repair or backfill, the process stays alive.
            dropped = len(self.buffer) - MAX_BUFFERED
            del self.buffer[:dropped]
            logger.error("trade buffer full: dropped %d oldest trades", dropped)
        if len(self.buffer) >= self.max_batch:
            self._wake.set()

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

    async def flush(self) -> int:
        """Store everything buffered; returns the number of new trades."""
        stored = 0
        while self.buffer:
            batch = self.buffer[: self.max_batch]
            try:
                new = await _ingest(batch)
            except Exception:
                logger.exception("storing %d trades failed; will retry", len(batch))
                await sync_to_async(close_old_connections)()
                await asyncio.sleep(1.0)
                return stored
            del self.buffer[: len(batch)]
            stored += new
            self._touch(batch)
        self.stored += stored
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


@sync_to_async
def _ingest(batch: list[TradeRecord]) -> int:
    return trades_ingest(records=batch)


@sync_to_async
def _rebuild(instrument: Instrument, start: int, end: int) -> int:
    return candles_rebuild(instrument=instrument, start_ms=start, end_ms=end)
