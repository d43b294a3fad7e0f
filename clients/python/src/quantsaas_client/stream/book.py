"""A local L2 book kept from a ``book`` channel: snapshot, then updates.

Two update forms are understood. Today the server sends the full top of book
in every update (no ``checksum``): the book is replaced. The v1.1 form sends
only changed levels (size 0 removes the level) with a CRC32 ``checksum`` of
the top levels: the levels are applied and the result verified, so a client
never trades on a book that silently drifted from the venue's.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Level = tuple[float, float]
ChecksumFn = Callable[["OrderBook"], int]
CHECKSUM_DEPTH = 10


def _number(value: float) -> str:
    # The number as JSON writes it (shortest round-trip form), so client and server
    # format the same float the same way.
    return json.dumps(value)


def crc32_checksum(book: OrderBook, depth: int = CHECKSUM_DEPTH) -> int:
    """CRC32 (unsigned) of ``"bid_price:bid_size:...:ask_price:ask_size"`` over the
    best ``depth`` bids (highest first) then the best ``depth`` asks (lowest first).

    Pass another function as ``Stream(checksum=...)`` if the server documents a
    different algorithm.
    """
    parts = [
        f"{_number(price)}:{_number(size)}"
        for price, size in [*book.bids(depth), *book.asks(depth)]
    ]
    return zlib.crc32(":".join(parts).encode())


class OrderBook:
    """Bids and asks by price. ``seq`` and ``ts`` are those of the last message applied."""

    def __init__(self, channel: str = "") -> None:
        self.channel = channel
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self.seq: int | None = None
        self.ts: int | None = None

    # --- reading ------------------------------------------------------------------------
    def bids(self, depth: int | None = None) -> list[Level]:
        levels = sorted(self._bids.items(), key=lambda level: -level[0])
        return levels if depth is None else levels[:depth]

    def asks(self, depth: int | None = None) -> list[Level]:
        levels = sorted(self._asks.items())
        return levels if depth is None else levels[:depth]

    @property
    def best_bid(self) -> Level | None:
        return max(self._bids.items(), default=None)

    @property
    def best_ask(self) -> Level | None:
        return min(self._asks.items(), default=None)

    @property
    def mid(self) -> float | None:
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    @property
    def spread(self) -> float | None:
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else ask[0] - bid[0]

    def copy(self) -> OrderBook:
        other = OrderBook(self.channel)
        other._bids, other._asks = dict(self._bids), dict(self._asks)
        other.seq, other.ts = self.seq, self.ts
        return other

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        return {
            "bids": [list(level) for level in self.bids(depth)],
            "asks": [list(level) for level in self.asks(depth)],
            "ts": self.ts,
            "seq": self.seq,
        }

    def __repr__(self) -> str:
        return f"<OrderBook {self.channel} seq={self.seq} bid={self.best_bid} ask={self.best_ask}>"

    # --- writing ------------------------------------------------------------------------
    def replace(self, data: dict[str, Any], seq: int) -> None:
        """The whole state: a snapshot, or today's full-state update."""
        self._bids = _side(data.get("bids") or ())
        self._asks = _side(data.get("asks") or ())
        self.seq, self.ts = seq, data.get("ts")

    def apply(self, data: dict[str, Any], seq: int) -> None:
        """Changed levels only: size 0 removes a level."""
        for side, key in ((self._bids, "bids"), (self._asks, "asks")):
            for price, size in _levels(data.get(key) or ()):
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        self.seq, self.ts = seq, data.get("ts", self.ts)


def _levels(levels: Iterable[Sequence[Any]]) -> Iterable[Level]:
    # Numbers kept as parsed (int or float), so the checksum formats them as sent.
    for level in levels:
        yield level[0], level[1]


def _side(levels: Iterable[Sequence[Any]]) -> dict[float, float]:
    return {price: size for price, size in _levels(levels) if size != 0}
