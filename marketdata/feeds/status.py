"""Feed health on the stream, ``status.<exchange>``: a quiet market or a dead feed?

The runner reports each exchange's streams when something a client would act on
changes (streams connected, gaps repaired, book resyncs, reconnects) and at least
every REPORT_EVERY_SECONDS otherwise, so a web process that hears nothing for a
while can say the feed is silent (hub.py). ``started_at`` changes when the feed
process restarts.
"""

from __future__ import annotations

import time
from typing import TypedDict

from marketdata.feeds.health import StreamHealth
from marketdata.feeds.publish import FeedPublisher

REPORT_EVERY_SECONDS = 5.0


def status_channel(exchange: str) -> str:
    return f"status.{exchange}"


class StatusSummary(TypedDict):
    """What ``status.<exchange>`` carries (docs/api.md)."""

    exchange: str
    connected: bool
    streams: int
    streams_connected: int
    unreachable: bool
    messages_per_second: float
    last_trade_age_ms: int | None
    gaps_repaired: int
    book_resyncs: int
    reconnects: int
    started_at: int
    ts: int


# The fields whose change is worth a message before REPORT_EVERY_SECONDS.
Signature = tuple[bool, int, bool, int, int, int]


def status_summary(exchange: str, streams: list[StreamHealth], *, started_at: int) -> StatusSummary:
    now = time.time_ns() // 1_000_000
    trades = [s.last_message_ms for s in streams if s.kind == "trades" and s.last_message_ms]
    return {
        "exchange": exchange,
        "connected": bool(streams) and all(s.connected for s in streams),
        "streams": len(streams),
        "streams_connected": sum(s.connected for s in streams),
        "unreachable": any(s.unreachable for s in streams),
        "messages_per_second": round(sum(s.messages_per_second for s in streams), 2),
        "last_trade_age_ms": now - max(trades) if trades else None,
        "gaps_repaired": sum(s.gaps_repaired for s in streams),
        "book_resyncs": sum(s.book_resyncs for s in streams),
        "reconnects": sum(s.reconnects for s in streams),
        "started_at": started_at,
        "ts": now,
    }


def _signature(summary: StatusSummary) -> Signature:
    return (
        summary["connected"],
        summary["streams_connected"],
        summary["unreachable"],
        summary["gaps_repaired"],
        summary["book_resyncs"],
        summary["reconnects"],
    )


class StatusReporter:
    def __init__(self, publisher: FeedPublisher) -> None:
        self.publisher = publisher
        self.started_at = time.time_ns() // 1_000_000
        self._sent: dict[str, tuple[Signature, float]] = {}

    async def report(self, healths: list[StreamHealth], *, force: bool = False) -> None:
        by_exchange: dict[str, list[StreamHealth]] = {}
        for health in healths:
            by_exchange.setdefault(health.exchange, []).append(health)
        now = time.monotonic()
        for exchange, streams in by_exchange.items():
            summary = status_summary(exchange, streams, started_at=self.started_at)
            signature = _signature(summary)
            previous = self._sent.get(exchange)
            if (
                force
                or previous is None
                or previous[0] != signature
                or now - previous[1] >= REPORT_EVERY_SECONDS
            ):
                self._sent[exchange] = (signature, now)
                await self.publisher.publish_to(status_channel(exchange), "status", summary)
