"""The consolidated channels, computed in the feed runner as it publishes venues' books.

``bbo.consolidated.<PAIR>`` (best bid and ask across venues, each with its venue)
and ``book.consolidated.<PAIR>`` (the merged ladder, each level with every venue's
size) are published through the runner's own Publisher, so they get one seq and
go to the stream store like every other channel, and a venue tick reaches the
consolidated channels in the same flush as the venue's own book.

Why in the runner (docs/decisions.md): every real venue runs in one shard (the
seed's shard 1), where the runner already holds each venue's normalised book;
a separate process would re-read every book from Redis and add a hop of
latency. A pair is consolidated over the venues of the runner's own shard.

Pairs, staleness and merging rules: marketdata/consolidated.py. The latest
state of both channels also lands in the stream store's book state (REST reads
it: ``GET /api/v1/markets/consolidated/<PAIR>/bbo`` and ``/book``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from marketdata.consolidated import (
    Consolidated,
    VenueBook,
    bbo_merge,
    book_merge,
    consolidated_pair,
    stale_seconds,
)
from marketdata.feeds.health import StreamHealth
from marketdata.feeds.publish import FeedPublisher
from marketdata.records import BookUpdate
from marketdata.streaming.books import BOOK_DEPTH
from marketdata.symbols import symbol_to_path

if TYPE_CHECKING:
    from marketdata.models import Instrument

logger = logging.getLogger(__name__)
CHECK_SECONDS = 0.5


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Consolidator:
    """Each pair's venue books, merged and published when they change."""

    def __init__(
        self,
        publisher: FeedPublisher,
        instruments: Iterable[Instrument],
        healths: list[StreamHealth],
    ) -> None:
        self.publisher = publisher
        self.pair_of: dict[tuple[str, str], str] = {}
        for instrument in instruments:
            pair = consolidated_pair(instrument.exchange_id, instrument.symbol)
            if pair is not None:
                self.pair_of[(instrument.exchange_id, instrument.ccxt_symbol)] = pair
        # A pair is worth publishing when some venue offers it.
        self.books: dict[str, dict[str, VenueBook]] = {p: {} for p in self.pair_of.values()}
        self.book_healths = [
            h for h in healths if h.kind == "book" and (h.exchange, h.symbol) in self.pair_of
        ]
        self.included: dict[str, tuple[str, ...]] = {}
        self._bbo_sent: dict[str, tuple[Any, ...]] = {}  # the bbo's values but its time
        self._dirty: set[str] = set()
        self._scheduled = False
        self.stopped = False

    @property
    def active(self) -> bool:
        return bool(self.pair_of)

    async def book(self, update: BookUpdate) -> None:
        """A venue's new book (as the runner publishes it)."""
        pair = self.pair_of.get((update.exchange, update.symbol))
        if pair is None:
            return
        self.books[pair][update.exchange] = VenueBook(
            venue=update.exchange, bids=update.bids, asks=update.asks, ts=_now_ms()
        )
        self._dirty.add(pair)
        if not self._scheduled:  # the rest of this burst joins the same merge
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._merge_soon)

    def _merge_soon(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        for pair in dirty:
            self._publish(pair)

    def _live(self, pair: str, now: int) -> list[VenueBook]:
        """The venue books that count: feed connected, book fresh."""
        if self.stopped:
            return []
        down = {
            h.exchange
            for h in self.book_healths
            if not h.connected and self.pair_of.get((h.exchange, h.symbol)) == pair
        }
        limit = stale_seconds() * 1000
        return [
            b for v, b in sorted(self.books[pair].items()) if v not in down and now - b.ts <= limit
        ]

    def _publish(self, pair: str) -> None:
        now = _now_ms()
        books = self._live(pair, now)
        self.included[pair] = tuple(b.venue for b in books)
        bbo = bbo_merge(books, ts=now)
        signature = tuple(v for k, v in bbo.items() if k != "ts")
        path = symbol_to_path(pair)
        if signature != self._bbo_sent.get(pair):
            self._bbo_sent[pair] = signature
            self._send(f"bbo.consolidated.{path}", "bbo", bbo)
        self._send(f"book.consolidated.{path}", "book", book_merge(books, depth=BOOK_DEPTH, ts=now))

    def _send(self, channel: str, kind: str, data: Consolidated) -> None:
        task = asyncio.ensure_future(self.publisher.publish_to(channel, kind, data))
        task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """The runner is stopping: every pair goes out once more with no venue, so no
        client keeps trusting a best price nobody maintains."""
        self.stopped = True
        for pair in self.books:
            if self.included.get(pair):
                self._publish(pair)
        await asyncio.sleep(0)  # the publishes are queued before the runner's last flush

    async def run(self, stop: asyncio.Event) -> None:
        """Drop venues that went quiet or whose feed went down, as it happens."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
            now = _now_ms()
            for pair in self.books:
                venues = tuple(b.venue for b in self._live(pair, now))
                if venues != self.included.get(pair, ()):
                    self._publish(pair)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("publishing a consolidated channel failed: %s", task.exception())
