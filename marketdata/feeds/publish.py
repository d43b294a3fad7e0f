"""Publishing normalised events to the Channels groups the stream consumer joins.

Messages have ``type`` ``market.event`` (the consumer's ``market_event``
handler), the public ``channel`` name, a per-channel ``seq`` from this
publisher, and ``data`` in the public JSON shapes of API.md.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from channels.layers import get_channel_layer

from marketdata.feeds.groups import channel_group, channel_name
from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord

logger = logging.getLogger(__name__)
MESSAGE_TYPE = "market.event"


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


class Publisher:
    def __init__(self, layer=None) -> None:
        self.layer = layer if layer is not None else get_channel_layer()
        self.seq: dict[str, int] = defaultdict(int)

    async def publish(self, kind: str, exchange: str, symbol: str, data) -> None:
        if self.layer is None:
            return
        channel = channel_name(kind, exchange, symbol)
        self.seq[channel] += 1
        message = {"type": MESSAGE_TYPE, "channel": channel, "seq": self.seq[channel], "data": data}
        try:
            await self.layer.group_send(channel_group(channel), message)
        except Exception:  # a full or flaky layer must not stop ingest; storage is the record
            logger.warning("publish to %s failed", channel, exc_info=True)
