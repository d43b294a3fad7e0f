"""Gap repair: after any disconnect, fetch through REST every trade since the last one seen.

Duplicates are dropped twice over: here, by the ids this stream has already
handled (so nothing is published twice), and by the database's unique
(instrument, trade id) constraint (so nothing is stored twice).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from marketdata.feeds.base import FeedClient
from marketdata.feeds.config import ExchangeConfig
from marketdata.records import TradeRecord

PAGE_LIMIT = 1000
MAX_PAGES = 1000
# Gaps longer than this are left to backfill, so a runner that was down for days does
# not spend its first hour paging REST history instead of streaming.
MAX_LOOKBACK_MS = 3_600_000


@dataclass
class SeenTrades:
    """The most recent trade ids of one stream, and the newest trade handled."""

    capacity: int = 100_000
    last: TradeRecord | None = None
    _order: deque[str] = field(default_factory=deque)
    _ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.last is not None:
            self._ids.add(self.last.trade_id)
            self._order.append(self.last.trade_id)

    def __contains__(self, trade_id: str) -> bool:
        return trade_id in self._ids

    def fresh(self, trades: list[TradeRecord]) -> list[TradeRecord]:
        """Keep the trades not handled yet (and not repeated within `trades`); remember them."""
        out = []
        for t in trades:
            if t.trade_id in self._ids:
                continue
            self._ids.add(t.trade_id)
            self._order.append(t.trade_id)
            if len(self._order) > self.capacity:
                self._ids.discard(self._order.popleft())
            out.append(t)
            if self.last is None or t.ts >= self.last.ts:
                self.last = t
        return out


async def trades_repair(
    *,
    client: FeedClient,
    config: ExchangeConfig,
    symbol: str,
    seen: SeenTrades,
    accept: Callable[[list[TradeRecord]], Awaitable[None]],
) -> int:
    """Fetch the trades after `seen.last` page by page, hand the unseen ones to `accept`.

    Pages by trade id when the exchange supports it (exact), else by time: `since`
    is inclusive, so each page starts with trades already seen, which are dropped.
    Returns how many trades were recovered.
    """
    if seen.last is None:
        return 0
    now = time.time_ns() // 1_000_000
    start = seen.last
    cursor_ts = max(start.ts, now - MAX_LOOKBACK_MS)
    # Paging by id when the exchange supports it and the trade has a numeric id.
    by_id = bool(config.repair_from_id_param) and start.trade_id.isdigit()
    cursor_id = start.trade_id
    recovered = 0
    for _ in range(MAX_PAGES):
        if by_id:
            page = await client.fetch_trades(
                symbol, since=None, from_id=str(int(cursor_id) + 1), limit=PAGE_LIMIT
            )
        else:
            page = await client.fetch_trades(symbol, since=cursor_ts, limit=PAGE_LIMIT)
        fresh = seen.fresh(page)
        if fresh:
            recovered += len(fresh)
            await accept(fresh)
        if by_id:
            if len(page) < PAGE_LIMIT:
                break
            cursor_id = page[-1].trade_id
            continue
        if len(page) >= PAGE_LIMIT:
            newest = max(t.ts for t in page)
            # A full page of one millisecond would repeat forever: step past it.
            cursor_ts = newest if newest > cursor_ts else cursor_ts + 1
        elif config.fetch_trades_window_ms and cursor_ts + config.fetch_trades_window_ms < now:
            # The endpoint answered one window only; the rest of the gap is in the next.
            cursor_ts += config.fetch_trades_window_ms
        else:
            break
    return recovered
