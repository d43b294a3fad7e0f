"""Live OFI and VPIN inside the feed runner: fold events in, publish, store.

The runner's book and trade streams hand every accepted event to ``LiveAnalytics``;
per instrument it keeps an ``IncrementalOfi`` (1-second intervals, from the best bid and
ask of each book update) and an ``IncrementalVpin`` (from trades). Completed intervals and
buckets are published on ``ofi.<exchange>.<SYMBOL>`` and ``vpin.<exchange>.<SYMBOL>`` and
queued for storage, which a background loop writes in batches; the REST history reads the
stored rows, so it serves the numbers the stream sent.

Choices for the live VPIN (docs/decisions.md):
- bucket volume: a fiftieth of the instrument's stored volume of the last 24 hours (about
  50 buckets a day, as Easley et al. use), rounded to two significant digits; 1.0 when there
  is no history. Fixed for the life of the process; every stored bucket records it.
- sigma: ``TrailingSigma`` over the last 1,440 one-minute bars, seeded from the stored
  1-minute candles' closes, so a restart does not classify blind.
- trades older than the open bar (a gap repair after a reconnect) are stored by the trade
  writer but not folded in: the stream has already moved past them.
An interval or bar whose end has passed by ``CLOSE_GRACE_MS`` is closed by the clock too, so a
quiet market still publishes its last second and minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

from analytics import selectors
from analytics.incremental import (
    IncrementalOfi,
    IncrementalVpin,
    OfiInterval,
    TrailingSigma,
    VpinBucket,
)
from analytics.services import OfiRow, VpinRow, live_analytics_store
from marketdata.models import Instrument
from marketdata.records import BookUpdate, TradeRecord

if TYPE_CHECKING:  # the feed runner, which imports this module, owns the publisher
    from marketdata.feeds.publish import FeedPublisher, JsonRecord

logger = logging.getLogger(__name__)

OFI_INTERVAL_MS = 1_000
VPIN_WINDOW = 50
VPIN_BAR_MS = 60_000
VPIN_BUCKETS_PER_DAY = 50
SIGMA_BARS = 1_440
DEFAULT_BUCKET_VOLUME = 1.0
CLOSE_GRACE_MS = 1_000
STORE_SECONDS = 1.0


def bucket_volume_for(daily_volume: float) -> float:
    """A fiftieth of a day's volume, to two significant digits (DEFAULT when unknown)."""
    raw = daily_volume / VPIN_BUCKETS_PER_DAY
    if not (math.isfinite(raw) and raw > 0):
        return DEFAULT_BUCKET_VOLUME
    digits = 1 - math.floor(math.log10(raw))
    return round(raw, digits) or DEFAULT_BUCKET_VOLUME


def _seed(instrument: Instrument, now_ms: int) -> tuple[float, TrailingSigma]:
    bucket_volume = bucket_volume_for(
        selectors.daily_volume(instrument=instrument, before_ms=now_ms)
    )
    sigma = TrailingSigma(SIGMA_BARS)
    closes = selectors.candle_closes_recent(
        instrument=instrument, before_ms=now_ms, count=SIGMA_BARS + 1
    )
    for previous, close in itertools.pairwise(closes):
        sigma.add(close - previous)
    return bucket_volume, sigma


@dataclass
class _State:
    instrument: Instrument
    ofi: IncrementalOfi
    vpin: IncrementalVpin
    ofi_rows: list[OfiRow] = field(default_factory=list)
    vpin_rows: list[VpinRow] = field(default_factory=list)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveAnalytics:
    def __init__(self, *, publisher: FeedPublisher, instruments: list[Instrument]) -> None:
        self.publisher = publisher
        self.instruments = instruments
        self._states: dict[tuple[str, str], _State] = {}

    async def start(self) -> None:
        now = _now_ms()
        for instrument in self.instruments:
            try:
                bucket_volume, sigma = await sync_to_async(_seed)(instrument, now)
            except Exception:  # analytics must never stop ingest
                logger.warning("seeding VPIN of %s failed", instrument, exc_info=True)
                bucket_volume, sigma = DEFAULT_BUCKET_VOLUME, TrailingSigma(SIGMA_BARS)
            self._states[(instrument.exchange_id, instrument.ccxt_symbol)] = _State(
                instrument=instrument,
                ofi=IncrementalOfi(OFI_INTERVAL_MS),
                vpin=IncrementalVpin(
                    bucket_volume, window=VPIN_WINDOW, bar_ms=VPIN_BAR_MS, sigma=sigma
                ),
            )

    async def book(self, book: BookUpdate) -> None:
        state = self._states.get((book.exchange, book.symbol))
        if state is None or not book.bids or not book.asks:
            return  # a one-sided book has no best bid/ask pair to compare
        (bid_px, bid_sz), (ask_px, ask_sz) = book.bids[0][:2], book.asks[0][:2]
        closed = state.ofi.update(book.ts, bid_px, bid_sz, ask_px, ask_sz)
        if closed is not None:
            await self._ofi_emit(state, [closed])

    async def trades(self, trades: list[TradeRecord]) -> None:
        for trade in trades:
            state = self._states.get((trade.exchange, trade.symbol))
            if state is None:
                continue
            open_bar = state.vpin.bar_start_ms
            if open_bar is not None and trade.ts < open_bar:
                continue  # repaired history: stored, not folded in (module docstring)
            buckets = state.vpin.trade(trade.ts, trade.price, trade.size)
            if buckets:
                await self._vpin_emit(state, buckets)

    async def tick(self, now_ms: int | None = None) -> None:
        """Close what the clock has closed; called about once a second."""
        horizon = (_now_ms() if now_ms is None else now_ms) - CLOSE_GRACE_MS
        for state in self._states.values():
            closed = state.ofi.close_before(horizon)
            if closed is not None:
                await self._ofi_emit(state, [closed])
            buckets = state.vpin.close_before(horizon)
            if buckets:
                await self._vpin_emit(state, buckets)

    async def _ofi_emit(self, state: _State, intervals: list[OfiInterval]) -> None:
        instrument = state.instrument
        payload: list[JsonRecord] = [
            {"ts": i.start_ms, "ofi": i.ofi, "updates": i.updates, "interval_ms": OFI_INTERVAL_MS}
            for i in intervals
        ]
        await self.publisher.publish("ofi", instrument.exchange_id, instrument.ccxt_symbol, payload)
        state.ofi_rows.extend(
            OfiRow(instrument.pk, i.start_ms, i.ofi, i.updates) for i in intervals
        )

    async def _vpin_emit(self, state: _State, buckets: list[VpinBucket]) -> None:
        instrument, vpin = state.instrument, state.vpin
        payload: list[JsonRecord] = [
            {
                "ts": b.ts_ms,
                "buy_volume": b.buy_volume,
                "sell_volume": b.sell_volume,
                "vpin": b.vpin,
                "bucket_volume": vpin.bucket_volume,
                "window": vpin.window,
            }
            for b in buckets
        ]
        await self.publisher.publish(
            "vpin", instrument.exchange_id, instrument.ccxt_symbol, payload
        )
        state.vpin_rows.extend(
            VpinRow(
                instrument.pk,
                b.ts_ms,
                vpin.bucket_volume,
                vpin.window,
                vpin.bar_ms,
                b.buy_volume,
                b.sell_volume,
                b.vpin,
                b.sigma,
            )
            for b in buckets
        )

    async def store(self) -> None:
        ofi, vpin = [], []
        for state in self._states.values():
            ofi += state.ofi_rows
            vpin += state.vpin_rows
            state.ofi_rows, state.vpin_rows = [], []
        if not (ofi or vpin):
            return
        try:
            await sync_to_async(live_analytics_store)(ofi=ofi, vpin=vpin)
        except Exception:  # storage is best effort here; the stream already went out
            logger.warning("storing %d ofi and %d vpin rows failed", len(ofi), len(vpin))

    async def run(self, stop: asyncio.Event) -> None:
        """Close by the clock and store, about once a second, until `stop`; then store."""
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STORE_SECONDS)
                await self.tick()
                await self.store()
        finally:
            await self.store()
