"""Publishing normalised events to the Channels groups the stream consumer joins.

Messages have ``type`` ``market.event``, the public ``channel`` name, a
per-channel ``seq``, ``ts`` (publish time, ms) and ``data`` in the public JSON
shapes of API.md.

Batching: at most one message per channel per BATCH_WINDOW_SECONDS carrying
everything of the window (the first record after a quiet window goes at once),
because each message costs every subscribed server a wake-up and every client a
frame (docs/streaming.md has the measurements). ``data`` is a list of records
for trades (and ofi, vpin), a list of candles (latest version of each minute)
for candles_1m, and the latest state for book and ticker. Every record gets
``recv_ts``, when we received it. ``seq`` counts messages, not records, and is
assigned here, by the one feed runner that owns the stream, so every server and
every delayed copy carry the same numbers.

Replay history: before the group sends, each flush appends its messages to the
channels' Redis Streams in one pipeline (marketdata/streaming/replay.py), so a
delayed client's server can read what it did not hear. Appending first means a
message a hub misses live (it joined the group just after the send) is already
in the stream when the hub reads it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict

from channels.layers import get_channel_layer

from marketdata.feeds.groups import channel_group, channel_name
from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord
from marketdata.streaming.replay import RedisReplay, replay_for_settings

logger = logging.getLogger(__name__)
MESSAGE_TYPE = "market.event"
BATCH_WINDOW_SECONDS = float(os.environ.get("STREAM_BATCH_MS", "100")) / 1000
LATEST_STATE_KINDS = frozenset({"book", "ticker"})
_FROM_SETTINGS = object()


def trade_payload(t: TradeRecord) -> dict:
    return {"id": t.trade_id, "ts": t.ts, "price": t.price, "size": t.size, "side": t.side}


def book_payload(b: BookUpdate) -> dict:
    return {"bids": [list(lv) for lv in b.bids], "asks": [list(lv) for lv in b.asks], "ts": b.ts}


def ticker_payload(t: TickerRecord) -> dict:
    return {
        "ts": t.ts,
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


def candle_payload(c: CandleRecord) -> dict:
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


def _stamped(record, received: int):
    return {**record, "recv_ts": received} if isinstance(record, dict) else record


class _Batch:
    __slots__ = ("data", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.data = None if kind in LATEST_STATE_KINDS else []

    def add(self, data, received: int) -> None:
        if self.kind in LATEST_STATE_KINDS:
            self.data = _stamped(data, received)
            return
        records = data if isinstance(data, list) else [data]
        stamped = [_stamped(r, received) for r in records]
        if self.kind == "candles_1m":
            for candle in stamped:  # one entry per minute: its latest version
                if self.data and self.data[-1].get("ts") == candle.get("ts"):
                    self.data[-1] = candle
                else:
                    self.data.append(candle)
        else:
            self.data.extend(stamped)


class Publisher:
    """Batches per channel: at most one message per channel per window.

    The window only ever delays a record when the previous flush was less than a
    window ago: a record that arrives after a quiet window is flushed on the next
    loop turn (with anything published in the same burst), so sparse channels
    (tickers, books of quiet markets) get no batching delay while a busy channel
    (1,000 trades a second) still costs one message per window.
    """

    def __init__(
        self, layer=None, *, window_seconds: float | None = None, replay=_FROM_SETTINGS
    ) -> None:
        self.layer = layer if layer is not None else get_channel_layer()
        # None: no replay history (embedded mode, or a caller that wants none)
        self.replay: RedisReplay | None = (
            replay_for_settings() if replay is _FROM_SETTINGS else replay
        )
        self.seq: dict[str, int] = defaultdict(int)
        self.window = BATCH_WINDOW_SECONDS if window_seconds is None else window_seconds
        self._batches: dict[str, _Batch] = {}
        self._flusher: asyncio.Task | None = None
        self._last_flush = float("-inf")  # loop time of the last flush

    async def publish(self, kind: str, exchange: str, symbol: str, data) -> None:
        """Queue `data` for the channel's next batch (sent within the window)."""
        if self.layer is None:
            return
        channel = channel_name(kind, exchange, symbol)
        batch = self._batches.get(channel)
        if batch is None:
            batch = self._batches[channel] = _Batch(kind)
        batch.add(data, _now_ms())
        if self.window <= 0:
            await self.flush()
        elif self._flusher is None:
            quiet_for = asyncio.get_running_loop().time() - self._last_flush
            self._flusher = asyncio.ensure_future(
                self._flush_later(max(0.0, self.window - quiet_for))
            )

    async def _flush_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            while True:
                self._last_flush = asyncio.get_running_loop().time()
                await self.flush()
                await asyncio.sleep(self.window)
                if not self._batches:  # quiet for a whole window: the next record goes at once
                    return
        finally:
            self._flusher = None

    async def flush(self) -> None:
        """Send every pending batch now (also what a clean shutdown calls)."""
        batches, self._batches = self._batches, {}
        messages = []
        for channel, batch in batches.items():
            if batch.data is None or batch.data == []:
                continue
            self.seq[channel] += 1
            messages.append(
                {
                    "type": MESSAGE_TYPE,
                    "channel": channel,
                    "seq": self.seq[channel],
                    "ts": _now_ms(),
                    "data": batch.data,
                }
            )
        if messages and self.replay is not None:
            try:  # before the sends: see the module docstring
                await self.replay.append(messages)
            except Exception:  # replay history is a convenience; live delivery goes on
                logger.warning("replay append failed", exc_info=True)
        for message in messages:
            channel = message["channel"]
            try:
                await self.layer.group_send(channel_group(channel), message)
            except Exception:  # a full or flaky layer must not stop ingest; storage is the record
                logger.warning("publish to %s failed", channel, exc_info=True)
