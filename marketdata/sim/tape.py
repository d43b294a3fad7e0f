"""The simulated venue's REST trade history: any past range, regenerated exactly.

The market is a function of (seed, instrument, time) (anchors.py), so the history is
computed, not stored: a segment of one instrument is simulated once and kept in a
small LRU cache, and a page is cut from the segments it spans. What it returns is
exactly what the live feed printed over the range, ids included.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from marketdata.records import TradeRecord
from marketdata.sim.anchors import SEGMENT_MS, segment_of
from marketdata.sim.market import SimExchange
from marketdata.sim.params import DEFAULT_INSTRUMENTS, InstrumentParams

CACHED_SEGMENTS = 24  # per tape: an hour of gap repair for four instruments


class SimTape:
    def __init__(
        self, *, seed: int = 0, instruments: tuple[InstrumentParams, ...] = DEFAULT_INSTRUMENTS
    ) -> None:
        self.seed = seed
        self.params = {p.symbol: p for p in instruments}
        self._segments: OrderedDict[tuple[str, int], list[TradeRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def segment_trades(self, symbol: str, segment: int) -> list[TradeRecord]:
        """Every trade of `symbol` in `segment`, oldest first (simulated on first use)."""
        key = (symbol, segment)
        with self._lock:
            if key in self._segments:
                self._segments.move_to_end(key)
                return self._segments[key]
        start = segment * SEGMENT_MS
        sim = SimExchange(seed=self.seed, start_ms=start, instruments=(self.params[symbol],))
        trades = sim.advance_trades(start + SEGMENT_MS)
        with self._lock:
            self._segments[key] = trades
            while len(self._segments) > CACHED_SEGMENTS:
                self._segments.popitem(last=False)
        return trades

    def trades(self, symbol: str, *, since: int, until: int, limit: int) -> list[TradeRecord]:
        """Up to `limit` trades with since <= ts < until, oldest first."""
        if symbol not in self.params:
            return []
        out: list[TradeRecord] = []
        segment = segment_of(since)
        while segment * SEGMENT_MS < until and len(out) < limit:
            out.extend(t for t in self.segment_trades(symbol, segment) if since <= t.ts < until)
            segment += 1
        return out[:limit]

    def latest(self, symbol: str, *, until: int, limit: int) -> list[TradeRecord]:
        """The last `limit` trades before `until`, oldest first (REST without `since`)."""
        out: list[TradeRecord] = []
        segment = segment_of(until - 1)
        low = segment - 6  # at most an hour back
        while len(out) < limit and segment >= low and symbol in self.params:
            page = [t for t in self.segment_trades(symbol, segment) if t.ts < until]
            out = page + out
            segment -= 1
        return out[-limit:]
