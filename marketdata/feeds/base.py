"""The stream interface every feed source implements (ccxt.pro or the simulator).

A client belongs to one event loop and one stream; the runner makes a fresh
one for every (re)connect, so a broken connection never leaks state into the
next attempt. ``watch_*`` calls block until the next event(s) and return
normalised records; they raise :class:`StreamDisconnected` when the
connection is lost and :class:`BookOutOfSync` when the order book's update
sequence has a gap (the caller then takes a fresh snapshot by watching again).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord


class FeedError(Exception):
    """Base of the errors a stream recovers from by itself."""


class StreamDisconnected(FeedError):
    """The connection dropped or failed; reconnect with backoff, then repair gaps."""


class VenueUnreachable(StreamDisconnected):
    """The venue cannot be reached at all (no route, DNS, refused): health says
    `unreachable` instead of `down`, and the stream keeps retrying with backoff."""


class BookOutOfSync(FeedError):
    """A sequence gap in book diffs: the local book is wrong until a fresh snapshot."""


class FeedClient(ABC):
    exchange: str

    async def __aenter__(self) -> FeedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def watch_trades(self, symbol: str) -> list[TradeRecord]:
        """The trades that arrived since the previous call (at least one)."""

    @abstractmethod
    async def watch_book(self, symbol: str, depth: int) -> BookUpdate:
        """The book's top `depth` levels after the next change."""

    @abstractmethod
    async def watch_ticker(self, symbol: str) -> TickerRecord: ...

    @abstractmethod
    async def fetch_trades(
        self, symbol: str, *, since: int | None, from_id: str | None = None, limit: int = 1000
    ) -> list[TradeRecord]:
        """REST history, oldest first: trades at or after `since` (or from trade id `from_id`)."""

    async def fetch_candles(
        self, symbol: str, *, since: int, limit: int = 1000
    ) -> list[CandleRecord]:
        """REST 1-minute candles from `since`, oldest first (final candles only)."""
        raise NotImplementedError
