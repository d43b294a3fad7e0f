"""What the feed runner lets others plug in: live consumers of the streams' events.

Live analytics (OFI per second, VPIN buckets) and customers' alert rules run inside
the feed runner, where the data already is, but they belong to apps above marketdata
(docs/architecture.md). So the runner never imports them: it defines these protocols,
and the command that starts it (`run_feeds`, `serve`) passes a `LivePlugins` factory
that builds them. A runner started without one streams, stores and publishes market
data alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from marketdata.feeds.publish import Publisher
from marketdata.models import Instrument
from marketdata.records import BookUpdate, TradeRecord


class LiveListener(Protocol):
    """Hears every stream's trades and books on their hot path (FeedContext.analytics).

    Called inline by each stream, so an implementation must be quick and must not raise.
    """

    async def trades(self, trades: list[TradeRecord]) -> None: ...

    async def book(self, book: BookUpdate) -> None: ...


class LiveCompanion(Protocol):
    """Runs beside the streams: started before the first stream connects, run until the
    writer's last flush (so it sees the streams' last events), then awaited."""

    async def start(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class Plugged:
    """What a `LivePlugins` factory gives the runner."""

    # What the streams publish through: the runner's own publisher, or one wrapping it
    # to hear what is published (alert rules judge trades, OFI and VPIN as they go out).
    publisher: Publisher
    listener: LiveListener | None = None
    companions: list[LiveCompanion] = field(default_factory=list)


class LivePlugins(Protocol):
    """Builds the live consumers for one runner, once it knows what it streams."""

    def __call__(
        self,
        *,
        publisher: Publisher,
        instruments: Sequence[Instrument],
        kinds: frozenset[str],
    ) -> Plugged: ...
