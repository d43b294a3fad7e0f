"""The built-in simulated exchange as a feed client, so `sim` runs through the same
streams, reconnect, repair and storage code as every real exchange.

One :class:`SimHub` per runner advances one deterministic market on the wall
clock and fans its events out to the clients subscribed to them. It keeps a
recent tape per symbol, which is what gap repair reads, like a REST history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict, deque

from marketdata.feeds.base import FeedClient
from marketdata.records import BookUpdate, TickerRecord, TradeRecord
from marketdata.sim.feed import sim_stream
from marketdata.sim.market import SimExchange
from quantsaas.timeutil import now_ms

TAPE_KEEP = 100_000


class SimHub:
    def __init__(self, *, seed: int | None = None, speed: float | None = None) -> None:
        self.seed = int(os.environ.get("SIM_SEED", "0")) if seed is None else seed
        self.speed = float(os.environ.get("SIM_SPEED", "1")) if speed is None else speed
        self.tapes: dict[str, deque[TradeRecord]] = defaultdict(lambda: deque(maxlen=TAPE_KEEP))
        self._queues: dict[tuple[str, str], set[asyncio.Queue]] = defaultdict(set)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        sim = SimExchange(seed=self.seed, start_ms=now_ms())
        async for event in sim_stream(sim, speed=self.speed):
            if isinstance(event, TradeRecord):
                self.tapes[event.symbol].append(event)
                kind = "trades"
            elif isinstance(event, BookUpdate):
                kind = "book"
            else:
                kind = "ticker"
            for queue in self._queues.get((kind, event.symbol), ()):
                queue.put_nowait(event)

    def subscribe(self, kind: str, symbol: str) -> asyncio.Queue:
        self.start()
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[(kind, symbol)].add(queue)
        return queue

    def unsubscribe(self, kind: str, symbol: str, queue: asyncio.Queue) -> None:
        self._queues[(kind, symbol)].discard(queue)


class SimFeedClient(FeedClient):
    exchange = "sim"

    def __init__(self, hub: SimHub) -> None:
        self.hub = hub
        self._subscriptions: dict[tuple[str, str], asyncio.Queue] = {}

    def _queue(self, kind: str, symbol: str) -> asyncio.Queue:
        key = (kind, symbol)
        if key not in self._subscriptions:
            self._subscriptions[key] = self.hub.subscribe(kind, symbol)
        return self._subscriptions[key]

    async def close(self) -> None:
        for (kind, symbol), queue in self._subscriptions.items():
            self.hub.unsubscribe(kind, symbol, queue)
        self._subscriptions.clear()

    @staticmethod
    async def _drain(queue: asyncio.Queue) -> list:
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def watch_trades(self, symbol: str) -> list[TradeRecord]:
        received = now_ms()
        trades = await self._drain(self._queue("trades", symbol))
        return [_received(t, received) for t in trades]

    async def watch_book(self, symbol: str, depth: int) -> BookUpdate:
        book = (await self._drain(self._queue("book", symbol)))[-1]
        return BookUpdate(
            exchange=book.exchange,
            symbol=book.symbol,
            ts=book.ts,
            bids=book.bids[:depth],
            asks=book.asks[:depth],
            seq=book.seq,
        )

    async def watch_ticker(self, symbol: str) -> TickerRecord:
        return (await self._drain(self._queue("ticker", symbol)))[-1]

    async def fetch_trades(
        self, symbol: str, *, since: int | None, from_id: str | None = None, limit: int = 1000
    ) -> list[TradeRecord]:
        tape = self.hub.tapes.get(symbol, ())
        selected = [t for t in tape if since is None or t.ts >= since]
        return selected[:limit] if since is not None else selected[-limit:]


def _received(t: TradeRecord, received: int) -> TradeRecord:
    if t.received_ts is not None:
        return t
    return TradeRecord(
        exchange=t.exchange,
        symbol=t.symbol,
        trade_id=t.trade_id,
        ts=t.ts,
        price=t.price,
        size=t.size,
        side=t.side,
        received_ts=received,
    )
