"""Books on the stream: a snapshot, then only the levels that changed, and a checksum.

The feed runner keeps the top ``BOOK_DEPTH`` levels of each book it publishes
and sends, per message, the levels whose size changed since its last message
(``[price, size]``; size 0 = the level left the top ``BOOK_DEPTH``, traded
away or cancelled) with ``checksum``, the CRC32 of the top ``CHECKSUM_DEPTH``
levels after the change (``book_checksum``). A client that applies every delta
to its snapshot holds exactly the server's book, and the checksum proves it.

Depth on subscribe is one of ``STREAM_DEPTHS``. Each depth is its own view of
the same book: the snapshot is its top `depth` levels and the deltas are those
of that view (a level entering the view because better ones went is sent; one
pushed out is sent with size 0). The publisher computes the views once
(``book_message``), so web processes never diff books. A view never goes below
``CHECKSUM_DEPTH``, so every view carries the same checksum.

Merging consecutive deltas (coalescing, ``conflate_ms``, a resume's backlog) is
the union of their levels, the later winning, with the last message's checksum
and times (``deltas_merge``).

Levels may carry more than price and size (the consolidated book adds each
venue's size); a level changed when any part of it changed.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

BOOK_DEPTH = 50
CHECKSUM_DEPTH = 10
STREAM_DEPTHS = (10, 20, 50)
DEFAULT_DEPTH = 20
BOOK_KINDS = frozenset({"book"})


# One level as the venue sent it: ``[price, size, ...]`` (the consolidated book adds
# each venue's size), JSON.
Level = list[Any]
# A book message or state as JSON: ``bids``, ``asks``, ``checksum`` and the venue's extras.
BookData = dict[str, Any]


def depth_default(allowed: int) -> int:
    """The depth of a subscription that names none: ``DEFAULT_DEPTH``, or the deepest
    stream depth within the plan's ``allowed`` depth when that is less."""
    within = [d for d in STREAM_DEPTHS if d <= min(DEFAULT_DEPTH, allowed)]
    return within[-1] if within else STREAM_DEPTHS[0]


def is_book_channel(channel: str) -> bool:
    return channel.startswith("book.")


def _text(value: Any) -> str:
    # As Python's json writes the number (shortest round trip: 64000.5, 100.0, 1e-05);
    # the Python client formats the numbers it parsed the same way.
    return json.dumps(value)


def book_checksum(bids: Sequence[Sequence[Any]], asks: Sequence[Sequence[Any]]) -> int:
    """CRC32 (unsigned) of ``bid_price:bid_size:...:ask_price:ask_size`` over the best
    ``CHECKSUM_DEPTH`` bids (highest first), then the best ``CHECKSUM_DEPTH`` asks."""
    parts = [
        f"{_text(level[0])}:{_text(level[1])}"
        for level in [*bids[:CHECKSUM_DEPTH], *asks[:CHECKSUM_DEPTH]]
    ]
    return zlib.crc32(":".join(parts).encode())


class Ladder:
    """One book's levels by price, each level kept as sent (``[price, size, ...]``)."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, Level] = {}
        self.asks: dict[float, Level] = {}

    @classmethod
    def of(cls, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]) -> Ladder:
        ladder = cls()
        ladder.bids = {lv[0]: list(lv) for lv in bids if lv[1]}
        ladder.asks = {lv[0]: list(lv) for lv in asks if lv[1]}
        return ladder

    def copy(self) -> Ladder:
        other = Ladder()
        other.bids, other.asks = dict(self.bids), dict(self.asks)
        return other

    def top_bids(self, depth: int | None = None) -> list[Level]:
        levels = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        return levels if depth is None else levels[:depth]

    def top_asks(self, depth: int | None = None) -> list[Level]:
        levels = [self.asks[p] for p in sorted(self.asks)]
        return levels if depth is None else levels[:depth]

    def cut(self, depth: int) -> Ladder:
        return Ladder.of(self.top_bids(depth), self.top_asks(depth))

    def apply(self, data: Mapping[str, Any]) -> None:
        """Apply one delta (size 0 removes the level)."""
        for side, key in ((self.bids, "bids"), (self.asks, "asks")):
            for level in data.get(key) or ():
                if level[1]:
                    side[level[0]] = list(level)
                else:
                    side.pop(level[0], None)

    def checksum(self) -> int:
        return book_checksum(self.top_bids(CHECKSUM_DEPTH), self.top_asks(CHECKSUM_DEPTH))


def _side_diff(before: dict[float, Level], after: dict[float, Level]) -> list[Level]:
    changed = [level for price, level in after.items() if before.get(price) != level]
    removed = [[price, 0] for price in before if price not in after]
    return changed + removed


def ladder_diff(before: Ladder, after: Ladder) -> tuple[list[Level], list[Level]]:
    """The levels to apply to `before` to get `after`, best first per side."""
    bids = sorted(_side_diff(before.bids, after.bids), key=lambda lv: -lv[0])
    asks = sorted(_side_diff(before.asks, after.asks), key=lambda lv: lv[0])
    return bids, asks


def book_message(
    before: Ladder, state: Mapping[str, Any]
) -> tuple[Ladder, BookData, dict[int, bytes], bytes]:
    """What the publisher sends for a book's new `state` (full levels, best first).

    Returns the new top-``BOOK_DEPTH`` ladder, the delta for the full depth (data of
    the message), the smaller views' deltas as JSON, and the full state with its
    checksum as JSON (what a snapshot at any depth is cut from).
    """
    after = Ladder.of(state.get("bids", ())[:BOOK_DEPTH], state.get("asks", ())[:BOOK_DEPTH])
    checksum = after.checksum()
    extra = {k: v for k, v in state.items() if k not in ("bids", "asks")}
    bids, asks = ladder_diff(before, after)
    delta: BookData = {"bids": bids, "asks": asks, **extra, "checksum": checksum}
    views: dict[int, bytes] = {}
    for depth in STREAM_DEPTHS:
        if depth >= BOOK_DEPTH:
            continue
        view_bids, view_asks = ladder_diff(before.cut(depth), after.cut(depth))
        views[depth] = orjson.dumps(
            {"bids": view_bids, "asks": view_asks, **extra, "checksum": checksum}
        )
    full = {
        "bids": after.top_bids(),
        "asks": after.top_asks(),
        **extra,
        "checksum": checksum,
    }
    return after, delta, views, orjson.dumps(full)


def snapshot_cut(raw: bytes, depth: int) -> bytes:
    """A full book state (JSON) cut to its best `depth` levels per side."""
    if depth >= BOOK_DEPTH:
        return raw
    state = orjson.loads(raw)
    state["bids"] = (state.get("bids") or [])[:depth]
    state["asks"] = (state.get("asks") or [])[:depth]
    return orjson.dumps(state)


def deltas_merge(raws: list[bytes]) -> bytes:
    """Consecutive deltas as one: the union of their levels (later wins), the last's
    checksum and times."""
    merged: BookData = {}
    bids: dict[float, Level] = {}
    asks: dict[float, Level] = {}
    for raw in raws:
        data = orjson.loads(raw)
        for level in data.pop("bids", None) or ():
            bids[level[0]] = level
        for level in data.pop("asks", None) or ():
            asks[level[0]] = level
        merged.update(data)
    return orjson.dumps(
        {
            "bids": [bids[p] for p in sorted(bids, reverse=True)],
            "asks": [asks[p] for p in sorted(asks)],
            **merged,
        }
    )


class HeldBook:
    """A channel's full book as a hub or a delay line holds it: the state a snapshot is
    made of, at the seq of the last message applied."""

    __slots__ = ("_raw", "extra", "ladder", "seq", "ts")

    def __init__(self, ladder: Ladder, extra: BookData, *, seq: int, ts: int) -> None:
        self.ladder, self.extra, self.seq, self.ts = ladder, extra, seq, ts
        self._raw: bytes | None = None

    @classmethod
    def from_state(cls, raw: bytes, *, seq: int, ts: int) -> HeldBook:
        state = orjson.loads(raw)
        ladder = Ladder.of(state.pop("bids", None) or (), state.pop("asks", None) or ())
        held = cls(ladder, state, seq=seq, ts=ts)
        held._raw = raw
        return held

    def copy(self) -> HeldBook:
        other = HeldBook(self.ladder.copy(), dict(self.extra), seq=self.seq, ts=self.ts)
        other._raw = self._raw
        return other

    def apply(self, raw: bytes, *, seq: int, ts: int) -> None:
        delta = orjson.loads(raw)
        self.ladder.apply(delta)
        self.extra = {k: v for k, v in delta.items() if k not in ("bids", "asks")}
        self.seq, self.ts = seq, ts
        self._raw = None

    def state_raw(self) -> bytes:
        """The full state as JSON (built once per change, on demand)."""
        if self._raw is None:
            self._raw = orjson.dumps(
                {"bids": self.ladder.top_bids(), "asks": self.ladder.top_asks(), **self.extra}
            )
        return self._raw
