"""The built-in simulated exchange as a feed client, so `sim` runs through the same
streams, reconnect, repair and storage code as every real exchange.

One :class:`SimHub` per runner advances one deterministic market on the wall
clock and fans its events out to the clients subscribed to them. The market is a
function of (seed, instrument, time), so a restarted runner continues it where the
clock stands, and the REST history (`fetch_trades`, which gap repair and backfill
read) regenerates exactly the trades the live feed printed (marketdata.sim.tape).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from typing import Any, TypeVar

from marketdata.feeds.base import FeedClient
from marketdata.records import BookUpdate, TickerRecord, TradeRecord
from marketdata.sim.feed import sim_stream
from marketdata.sim.market import SimEvent, SimExchange
from marketdata.sim.tape import SimTape
from quantsaas.timeutil import now_ms

EventT = TypeVar("EventT", TradeRecord, BookUpdate, TickerRecord)


class SimHub:
    def __init__(self, *, seed: int | None = None, speed: float | None = None) -> None:
        self.seed = int(os.environ.get("SIM_SEED", "0")) if seed is None else seed
        self.speed = float(os.environ.get("SIM_SPEED", "1")) if speed is None else speed
        self.tape = SimTape(seed=self.seed)
        self.sim: SimExchange | None = None
        # (record type, symbol) -> the queues of the clients watching it
        self._queues: dict[tuple[type[SimEvent], str], set[asyncio.Queue[Any]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def now_ms(self) -> int:
        """The market's clock: how far the venue's history reaches."""
        if self.sim is not None:
            return self.sim.now_ms
        return now_ms()

    async def _run(self) -> None:
        # Replaying the current segment up to now takes up to a second: off the loop.
        sim = await asyncio.to_thread(SimExchange, seed=self.seed, start_ms=now_ms())
        self.sim = sim
        async for event in sim_stream(sim, speed=self.speed):
            for queue in self._queues.get((type(event), event.symbol), ()):
                queue.put_nowait(event)

    def subscribe(self, kind: type[EventT], symbol: str) -> asyncio.Queue[EventT]:
        """A queue of `symbol`'s events of one kind (TradeRecord, BookUpdate, TickerRecord)."""
        self.start()
        queue: asyncio.Queue[EventT] = asyncio.Queue()
        self._queues[(kind, symbol)].add(queue)
        return queue

    def unsubscribe(self, kind: type[SimEvent], symbol: str, queue: asyncio.Queue[Any]) -> None:
        self._queues[(kind, symbol)].discard(queue)


class SimFeedClient(FeedClient):
    exchange = "sim"

    def __init__(self, hub: SimHub) -> None:
        self.hub = hub
        self._subscriptions: dict[tuple[type[SimEvent], str], asyncio.Queue[Any]] = {}

    def _queue(self, kind: type[EventT], symbol: str) -> asyncio.Queue[EventT]:
        key = (kind, symbol)
        if key not in self._subscriptions:
            self._subscriptions[key] = self.hub.subscribe(kind, symbol)
        queue: asyncio.Queue[EventT] = self._subscriptions[key]  # keyed by its record type
        return queue

    async def close(self) -> None:
        for (kind, symbol), queue in self._subscriptions.items():
            self.hub.unsubscribe(kind, symbol, queue)
        self._subscriptions.clear()

    @staticmethod
    async def _drain(queue: asyncio.Queue[EventT]) -> list[EventT]:
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def watch_trades(self, symbol: str) -> list[TradeRecord]:
        received = now_ms()
        trades = await self._drain(self._queue(TradeRecord, symbol))
        return [_received(t, received) for t in trades]

    async def watch_book(self, symbol: str, depth: int) -> BookUpdate:
        book = (await self._drain(self._queue(BookUpdate, symbol)))[-1]
        return BookUpdate(
            exchange=book.exchange,
            symbol=book.symbol,
            ts=book.ts,
            bids=book.bids[:depth],
            asks=book.asks[:depth],
            seq=book.seq,
        )

    async def watch_ticker(self, symbol: str) -> TickerRecord:
        return (await self._drain(self._queue(TickerRecord, symbol)))[-1]

    async def fetch_trades(
        self, symbol: str, *, since: int | None, from_id: str | None = None, limit: int = 1000
    ) -> list[TradeRecord]:
        until = self.hub.now_ms()
        tape = self.hub.tape
        if since is None:
            return await asyncio.to_thread(tape.latest, symbol, until=until, limit=limit)
        return await asyncio.to_thread(tape.trades, symbol, since=since, until=until, limit=limit)


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
