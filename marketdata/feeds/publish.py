"""Publishing normalised events to the per-channel streams the web processes read.

A message has the public ``channel`` name, a per-channel ``seq``, ``ts`` (publish
time, ms), ``records`` (how many records it carries) and ``data`` in the public
JSON shapes of docs/api.md, serialised once, here. ``data`` is a list of records for
trades (and ofi, vpin), a list of candles (latest version of each minute) for
candles_1m, and the latest state for book, ticker and status. Every record gets
``recv_ts``, when we received it. ``seq`` counts messages, not records, and is
assigned here, by the one feed runner that owns the stream, so every server and
every delayed copy carry the same numbers; a restarted runner continues from the
stored numbering (``RedisStore.last_seqs``).

Latency follows load, the way Nagle's algorithm does: a record goes out on the
next loop turn when nothing is being sent; while a flush is in flight, records
gather and go together in the next one. So a quiet market's tick reaches Redis
within a round trip, and a busy one costs one append per round trip, not one
per record. An optional minimum spacing per channel (``STREAM_MIN_GAP_MS``,
default 0) bounds the message rate of very busy channels further; the web
processes coalesce under their own load as well (hub.py).

Each flush appends its messages to the channels' Redis Streams in one pipeline
(marketdata/streaming/store.py); that is the whole delivery: the hubs read them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, TypedDict, cast

import orjson

from marketdata.feeds.groups import channel_name
from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord
from marketdata.streaming.books import Ladder, book_message, is_book_channel
from marketdata.streaming.store import (
    LocalStore,
    PublishedMessage,
    RedisStore,
    store_for_settings,
)

logger = logging.getLogger(__name__)
MIN_GAP_SECONDS = float(os.environ.get("STREAM_MIN_GAP_MS", "0")) / 1000
LATEST_STATE_KINDS = frozenset({"book", "ticker", "status", "bbo"})
UNSENT_MAX = 10_000


class _FromSettings(enum.Enum):
    """The default of Publisher's `store` (None means no store at all)."""

    TOKEN = enum.auto()


_FROM_SETTINGS = _FromSettings.TOKEN

# One record in its public JSON shape. The publisher carries every channel's records
# (feeds, analytics, alerts, status), so here the shape is open.
JsonRecord: TypeAlias = Mapping[str, Any]
# What one publish call queues: a record, or a list of them (trades, ofi, vpin ...).
ChannelData: TypeAlias = JsonRecord | list[JsonRecord]


class FeedPublisher(Protocol):
    """What feed code publishes through: a :class:`Publisher`, or a wrapper of one
    (``alerts.live.AlertingPublisher`` listens to what goes through)."""

    async def publish(self, kind: str, exchange: str, symbol: str, data: ChannelData) -> None: ...

    async def publish_to(self, channel: str, kind: str, data: ChannelData) -> None: ...

    async def flush(self) -> None: ...


class TradePayload(TypedDict):
    id: str
    ts: int
    price: float
    size: float
    side: str


class BookPayload(TypedDict):
    bids: list[list[float]]
    asks: list[list[float]]
    ts: int
    exchange_ts: int | None


class TickerPayload(TypedDict):
    ts: int
    exchange_ts: int | None
    last: float
    bid: float | None
    ask: float | None
    bid_size: float | None
    ask_size: float | None
    high_24h: float | None
    low_24h: float | None
    open_24h: float | None
    volume_24h: float | None
    quote_volume_24h: float | None


class CandlePayload(TypedDict):
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    is_final: bool


def trade_payload(t: TradeRecord) -> TradePayload:
    return {"id": t.trade_id, "ts": t.ts, "price": t.price, "size": t.size, "side": t.side}


def book_payload(b: BookUpdate) -> BookPayload:
    return {
        "bids": [list(lv) for lv in b.bids],
        "asks": [list(lv) for lv in b.asks],
        "ts": b.ts,
        "exchange_ts": b.exchange_ts,  # null when the venue sent no time (docs/marketdata.md)
    }


def ticker_payload(t: TickerRecord) -> TickerPayload:
    return {
        "ts": t.ts,
        "exchange_ts": t.exchange_ts,
        "last": t.last,
        "bid": t.bid,
        "ask": t.ask,
        "bid_size": t.bid_size,
        "ask_size": t.ask_size,
        "high_24h": t.high_24h,
        "low_24h": t.low_24h,
        "open_24h": t.open_24h,
        "volume_24h": t.volume_24h,
        "quote_volume_24h": t.quote_volume_24h,
    }


def candle_payload(c: CandleRecord) -> CandlePayload:
    return {
        "ts": c.ts,
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "is_final": c.is_final,
    }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _stamped(record: JsonRecord, received: int) -> JsonRecord:
    return {**record, "recv_ts": received} if isinstance(record, dict) else record


class _Batch:
    """A channel's pending message: the latest state (book, ticker, status, bbo) or the
    records gathered since the last one (a list, for every other kind)."""

    __slots__ = ("data", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.data: JsonRecord | list[JsonRecord] | None = None if kind in LATEST_STATE_KINDS else []

    def add(self, data: ChannelData, received: int) -> None:
        if self.kind in LATEST_STATE_KINDS:
            self.data = _stamped(cast(JsonRecord, data), received)  # a state is one record
            return
        records = data if isinstance(data, list) else [data]
        stamped = [_stamped(r, received) for r in records]
        pending = cast(list[JsonRecord], self.data)  # a list for these kinds (__init__)
        if self.kind == "candles_1m":
            for candle in stamped:  # one entry per minute: its latest version
                if pending and pending[-1].get("ts") == candle.get("ts"):
                    pending[-1] = candle
                else:
                    pending.append(candle)
        else:
            pending.extend(stamped)


class Publisher:
    """Sends each channel's records as soon as nothing is in flight (see the module doc).

    ``window_seconds`` is a minimum spacing between two messages of one channel
    (default ``STREAM_MIN_GAP_MS``, 0): a record arriving sooner waits for the rest of
    it; one arriving later goes on the next loop turn.
    """

    def __init__(
        self,
        *,
        window_seconds: float | None = None,
        store: RedisStore | LocalStore | _FromSettings | None = _FROM_SETTINGS,
    ) -> None:
        # None: publish nowhere (a caller that wants no delivery)
        self.store = store_for_settings() if store is _FROM_SETTINGS else store
        self.seq: dict[str, int] = defaultdict(int)
        self.window = MIN_GAP_SECONDS if window_seconds is None else window_seconds
        self._batches: dict[str, _Batch] = {}
        self._sent_at: dict[str, float] = {}  # loop time of each channel's last message
        self._numbered: set[str] = set()  # channels whose numbering was read from the store
        self._flusher: asyncio.Task[None] | None = None
        # Messages numbered but not yet stored (Redis away): sent first, in order, once it
        # is back, so subscribers see every seq. Bounded: beyond it, the oldest are dropped.
        self._unsent: deque[PublishedMessage] = deque(maxlen=UNSENT_MAX)
        self.failures = 0
        # The top levels of each book as last published: the next message is the change.
        self.books: dict[str, Ladder] = {}

    async def publish(self, kind: str, exchange: str, symbol: str, data: ChannelData) -> None:
        """Queue `data` for the channel's next message (sent as soon as nothing is in flight)."""
        await self.publish_to(channel_name(kind, exchange, symbol), kind, data)

    async def publish_to(self, channel: str, kind: str, data: ChannelData) -> None:
        """`publish` for a channel named already (``status.<exchange>`` has no symbol)."""
        if self.store is None:
            return
        batch = self._batches.get(channel)
        if batch is None:
            batch = self._batches[channel] = _Batch(kind)
        batch.add(data, _now_ms())
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # the rest of this burst joins the message
            while self._batches:
                wait = self._due(loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.flush(only_due=True)
        finally:
            self._flusher = None

    def _due(self, now: float) -> float:
        """Seconds until the first pending channel may send (0: one may now)."""
        if self.window <= 0:
            return 0.0
        return max(
            0.0,
            min(self._sent_at.get(c, float("-inf")) + self.window - now for c in self._batches),
        )

    async def flush(self, *, only_due: bool = False) -> None:
        """Send pending batches now (all of them unless `only_due`; a clean shutdown: all)."""
        now = asyncio.get_running_loop().time()
        if only_due and self.window > 0:
            due = {
                c for c in self._batches if self._sent_at.get(c, float("-inf")) + self.window <= now
            }
        else:
            due = set(self._batches)
        batches = {c: self._batches.pop(c) for c in due}
        batches = {c: b for c, b in batches.items() if b.data is not None and b.data != []}
        if not batches or self.store is None:
            return
        await self._number(self.store, list(batches))
        messages = []
        for channel, batch in batches.items():
            self.seq[channel] += 1
            self._sent_at[channel] = now
            seq, ts = self.seq[channel], _now_ms()
            records = len(batch.data) if isinstance(batch.data, list) else 1
            if batch.kind == "book":
                # Only the levels that changed go out; the full state is stored beside
                # them for snapshots (marketdata/streaming/books.py).
                before = self.books.get(channel) or Ladder()
                # A book batch holds the latest state (a dict: the book payload, stamped).
                book = cast(dict[str, Any], batch.data)
                self.books[channel], delta, views, state = book_message(before, book)
                message = PublishedMessage(
                    channel=channel,
                    seq=seq,
                    ts=ts,
                    records=records,
                    data=orjson.dumps(delta),
                    views=views,
                    state=state,
                )
            else:
                message = PublishedMessage(
                    channel=channel, seq=seq, ts=ts, records=records, data=orjson.dumps(batch.data)
                )
            messages.append(message)
        await self._append(self.store, messages)

    async def _append(
        self, store: RedisStore | LocalStore, messages: list[PublishedMessage]
    ) -> None:
        if self._unsent:
            self._unsent.extend(messages)
            messages = list(self._unsent)
        try:
            await store.append(messages)
        except Exception:  # a flaky store must not stop ingest; storage is the record
            self.failures += 1
            if not self._unsent:
                self._unsent.extend(messages)
            logger.warning("publishing %d messages failed; kept to retry", len(messages))
            return
        self._unsent.clear()

    async def _number(self, store: RedisStore | LocalStore, channels: list[str]) -> None:
        """Continue each channel's seq from the stored stream the first time it publishes."""
        unknown = [c for c in channels if c not in self._numbered]
        if not unknown:
            return
        try:
            stored = await store.last_seqs(unknown)
        except Exception:  # numbering starts afresh; clients are told by the seq restart
            logger.warning("reading the stored seq failed", exc_info=True)
            stored = {}
        books = [c for c in unknown if is_book_channel(c) and c not in self.books]
        if books:
            await self._books_load(store, books, stored)
        for channel in unknown:
            self.seq[channel] = max(self.seq[channel], stored.get(channel, 0))
            self._numbered.add(channel)

    async def _books_load(
        self, store: RedisStore | LocalStore, channels: list[str], stored_seqs: dict[str, int]
    ) -> None:
        """A restarted publisher's first delta is taken against the book its clients hold."""
        try:
            states = await store.book_states(channels)
        except Exception:  # the first message then carries every level
            logger.warning("reading the stored books failed", exc_info=True)
            return
        for channel, state in states.items():
            if state.seq != stored_seqs.get(channel, state.seq):
                continue  # not the state after the newest message: diff against nothing
            data = orjson.loads(state.data)
            self.books[channel] = Ladder.of(data.get("bids") or (), data.get("asks") or ())
