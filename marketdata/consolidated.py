"""The consolidated view: one pair's books across venues, merged.

**Pairs.** A venue's instrument belongs to the consolidated pair named by its public
symbol, which is ccxt's unified symbol (Coinbase ``BTC-USD``, Kraken's ``XBT/USD``
as ccxt names it, ``BTC/USD``): both are ``BTC-USD``. Quotes are never mixed:
Binance's ``BTC-USDT`` is the pair ``BTC-USDT``, not part of ``BTC-USD``, because
USDT is not USD (it trades at a small, moving premium or discount and can
de-peg); a customer who accepts USDT≈USD can read both pairs. The simulated
exchange is left out (``CONSOLIDATED_EXCLUDE``, default ``sim``): simulated
prices next to real ones would make a best price that does not exist.

**Staleness.** A venue counts while its feed reports itself connected and its
book is younger than ``CONSOLIDATED_STALE_SECONDS`` (default 10 s); otherwise it
drops out, and every frame lists the ``venues`` it was made of.

The feed runner computes this as it publishes the venues' books (feeds/consolidator.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import redis

# A consolidated frame's data, JSON as published (keys listed in bbo_merge and book_merge).
Consolidated = dict[str, Any]

CONSOLIDATED = "consolidated"
CONSOLIDATED_KINDS = ("bbo", "book")


def excluded_exchanges() -> frozenset[str]:
    raw = os.environ.get("CONSOLIDATED_EXCLUDE", "sim")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def stale_seconds() -> float:
    return float(os.environ.get("CONSOLIDATED_STALE_SECONDS", "10"))


def consolidated_pair(exchange: str, public_symbol: str) -> str | None:
    """The consolidated pair an instrument belongs to (None: the venue is left out)."""
    if exchange in excluded_exchanges():
        return None
    return public_symbol.upper()


def consolidated_pairs(instruments: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Pair -> the venues offering it, from (exchange, PUBLIC-SYMBOL) pairs."""
    pairs: dict[str, list[str]] = {}
    for exchange, symbol in sorted(instruments):
        pair = consolidated_pair(exchange, symbol)
        if pair is not None:
            pairs.setdefault(pair, []).append(exchange)
    return pairs


@dataclass(frozen=True, slots=True)
class VenueBook:
    venue: str
    bids: Sequence[Sequence[float]]  # best first
    asks: Sequence[Sequence[float]]
    ts: int  # when we received it (ms)


def bbo_merge(books: Sequence[VenueBook], *, ts: int) -> Consolidated:
    """Best bid and best ask across `books`, with the venue of each side.

    A tie goes to the venue with more size at that price, then by name, so the
    answer does not flicker between equal venues.
    """
    bid = max(
        ((b.bids[0], b.venue) for b in books if b.bids),
        key=lambda x: (x[0][0], x[0][1], _reverse(x[1])),
        default=None,
    )
    ask = min(
        ((b.asks[0], b.venue) for b in books if b.asks),
        key=lambda x: (x[0][0], -x[0][1], x[1]),
        default=None,
    )
    return {
        "bid": None if bid is None else bid[0][0],
        "bid_size": None if bid is None else bid[0][1],
        "bid_venue": None if bid is None else bid[1],
        "ask": None if ask is None else ask[0][0],
        "ask_size": None if ask is None else ask[0][1],
        "ask_venue": None if ask is None else ask[1],
        "venues": sorted(b.venue for b in books),
        "ts": ts,
    }


def _reverse(name: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in name)


def book_merge(books: Sequence[VenueBook], *, depth: int, ts: int) -> Consolidated:
    """The merged ladder: per price, the total size and each venue's size.

    Levels are ``[price, total_size, {venue: size}]``, best first, `depth` per side.
    """

    def side(
        levels_of: Callable[[VenueBook], Sequence[Sequence[float]]],
        best_first_key: Callable[[float], float],
    ) -> list[list[float | dict[str, float]]]:
        merged: dict[float, dict[str, float]] = {}
        for book in books:
            for level in levels_of(book)[:depth]:
                merged.setdefault(level[0], {})[book.venue] = level[1]
        prices = sorted(merged, key=best_first_key)[:depth]
        return [
            [price, round(sum(merged[price].values()), 12), dict(sorted(merged[price].items()))]
            for price in prices
        ]

    return {
        "bids": side(lambda b: b.bids, lambda p: -p),
        "asks": side(lambda b: b.asks, lambda p: p),
        "venues": sorted(b.venue for b in books),
        "ts": ts,
    }


# --- reads (REST) ---------------------------------------------------------------------------
_sync_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        import redis
        from django.conf import settings

        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _sync_client


def _stale_answer(state: Consolidated, *, now_ms: int) -> Consolidated:
    """A state older than the staleness limit means the runner stopped publishing:
    no venue counts any more, whatever it said last."""
    if now_ms - int(state.get("ts") or 0) <= stale_seconds() * 1000 + 1000:
        return state
    emptied: dict[str, Any] = {key: None for key in state if key.startswith(("bid", "ask"))}
    if "bids" in state:
        emptied.update(bids=[], asks=[])
    return {**state, **emptied, "venues": []}


def consolidated_read(
    kind: str, pair: str, *, at_ms: int | None, now_ms: int
) -> Consolidated | None:
    """The consolidated `kind` ("bbo" or "book") of `pair` now, or as of `at_ms` (a
    delayed plan: the last state published by then; for the book, the stored full
    state of at most a second before). None when nothing was published."""
    import orjson
    from django.conf import settings

    from marketdata.streaming import store as stream_store

    channel = f"{kind}.{CONSOLIDATED}.{pair}"
    if not settings.REDIS_URL:  # embedded mode: the feed runs in this process
        local = stream_store.local_store()
        if kind == "book":
            frames = [f for f in local.keyframes.get(channel, ()) if at_ms is None or f.ts <= at_ms]
            state = local.states.get(channel) if at_ms is None else (frames[-1] if frames else None)
            raw = None if state is None else state.data
        else:
            found = [m for m in local.streams.get(channel, ()) if at_ms is None or m.ts <= at_ms]
            raw = found[-1].data if found else None
    elif kind == "book":
        if at_ms is None:
            raw = cast("bytes | None", _redis().hget(stream_store.state_key(channel), "data"))
        else:
            rows = cast(
                "list[stream_store.StreamRow]",
                _redis().xrevrange(stream_store.keyframe_key(channel), max=at_ms, count=1),
            )
            raw = rows[0][1][b"data"] if rows else None
    else:
        high = "+" if at_ms is None else at_ms
        rows = cast(
            "list[stream_store.StreamRow]",
            _redis().xrevrange(stream_store.replay_key(channel), max=high, count=1),
        )
        raw = rows[0][1][b"data"] if rows else None
    if raw is None:
        return None
    state_data: Consolidated = orjson.loads(raw)
    return _stale_answer(state_data, now_ms=now_ms if at_ms is None else at_ms)
