"""One supervised stream per (instrument, kind): connect, consume, recover, repeat.

Every failure is handled the same way: close the client, wait with
exponential backoff and jitter, connect a fresh client. A stream that goes
quiet for longer than its exchange's `quiet_seconds` is restarted by the
watchdog (a half-open TCP connection never raises by itself). After any
reconnect the trade stream repairs the gap through REST; a book sequence gap
is answered by watching again, which takes a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from marketdata.candles import candles_from_trades
from marketdata.feeds.backoff import Backoff
from marketdata.feeds.base import BookOutOfSync, FeedClient, FeedError, VenueUnreachable
from marketdata.feeds.config import ExchangeConfig
from marketdata.feeds.health import StreamHealth
from marketdata.feeds.live_candles import live_candle_put
from marketdata.feeds.plugins import LiveListener
from marketdata.feeds.publish import (
    FeedPublisher,
    book_payload,
    candle_payload,
    ticker_payload,
    trade_payload,
)
from marketdata.feeds.repair import SeenTrades, trades_repair
from marketdata.feeds.writer import TradeWriter
from marketdata.live import live_book_put, live_ticker_put
from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord
from marketdata.services import book_snapshot_write, tickers_upsert
from quantsaas.db import database_sync_to_async

if TYPE_CHECKING:
    from marketdata.feeds.consolidator import Consolidator

logger = logging.getLogger(__name__)

REPAIR_GRACE_SECONDS = 1.0

T = TypeVar("T")
UpdateT = TypeVar("UpdateT")  # what one watch call of a stream returns


class StreamQuiet(FeedError):
    """No message within the watchdog's limit."""


class Pump(Generic[T]):
    """Calls `watch` back to back in one task and queues what it returns.

    Each watch is awaited directly, with no loop iteration between two calls: ccxt
    resolves the pending future of a watch, and a message landing while no call is
    pending would otherwise wait for the next message before being delivered.
    """

    def __init__(self, watch: Callable[[], Awaitable[T]]) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._watch = watch
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            self._queue.put_nowait(await self._watch())

    async def next(self, wait_seconds: float) -> T | None:
        """The next result, or None after `wait_seconds`; re-raises what broke the reader."""
        get = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait(
            {get, self._reader}, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if get in done:
            return get.result()
        get.cancel()
        if self._reader in done:
            self._reader.result()
        return None

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


@dataclass
class FeedContext:
    """What every stream of one runner shares."""

    publisher: FeedPublisher
    writer: TradeWriter
    client_for: Callable[[str], Awaitable[FeedClient]]
    stop: asyncio.Event
    book_snapshot_seconds: float = 10.0
    ticker_store_seconds: float = 5.0
    live_candles: dict[tuple[str, str], CandleRecord] = field(default_factory=dict)
    # Live OFI and VPIN, plugged in by the command that starts the runner (feeds/plugins.py).
    analytics: LiveListener | None = None
    consolidator: Consolidator | None = None  # consolidated channels (feeds/consolidator.py)


async def stream_supervise(
    *,
    ctx: FeedContext,
    config: ExchangeConfig,
    symbol: str,
    health: StreamHealth,
    consume: Callable[[FeedClient], Awaitable[None]],
) -> None:
    """Run `consume` with a fresh client until stopped; reconnect with backoff on failure."""
    backoff = Backoff()
    while not ctx.stop.is_set():
        messages_before = health.messages
        try:
            client = await ctx.client_for(config.id)
            async with client:
                await consume(client)
        except asyncio.CancelledError:
            raise
        except VenueUnreachable as exc:
            health.unreachable = True
            logger.warning("%s %s %s unreachable: %s", config.id, health.kind, symbol, exc)
        except FeedError as exc:
            logger.warning("%s %s %s: %s", config.id, health.kind, symbol, exc)
        except Exception:
            logger.exception("%s %s %s failed", config.id, health.kind, symbol)
        health.connected = False
        if ctx.stop.is_set():
            break
        if health.messages > messages_before:
            backoff.reset()  # it worked for a while: this is a new incident
        health.reconnects += 1
        delay = backoff.next_delay()
        logger.info("%s %s %s: reconnecting in %.2fs", config.id, health.kind, symbol, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stop.wait(), delay)


# --- one supervised stream per instrument and kind -----------------------------------------
class SupervisedStream(Generic[UpdateT]):
    """What every stream shares: its health entry and the reconnecting supervisor.

    `UpdateT` is what the stream's watch returns and `accept` takes.
    """

    kind = ""

    def __init__(self, *, ctx: FeedContext, config: ExchangeConfig, symbol: str) -> None:
        self.ctx, self.config, self.symbol = ctx, config, symbol
        self.health = StreamHealth(exchange=config.id, kind=self.kind, symbol=symbol)

    async def run(self) -> None:
        await stream_supervise(
            ctx=self.ctx,
            config=self.config,
            symbol=self.symbol,
            health=self.health,
            consume=self.consume,
        )

    async def consume(self, client: FeedClient) -> None:
        raise NotImplementedError

    async def consume_until_quiet(self, watch: Callable[[], Awaitable[UpdateT]]) -> None:
        """Accept each update until the exchange goes quiet (the supervisor reconnects)."""
        pump = Pump(watch)
        try:
            while True:
                update = await pump.next(self.config.quiet_seconds)
                if update is None:
                    raise StreamQuiet(f"no {self.kind} update for {self.config.quiet_seconds}s")
                self.health.message()
                await self.accept(update)
        finally:
            await pump.close()

    async def accept(self, update: UpdateT) -> None:
        raise NotImplementedError


# --- trades -------------------------------------------------------------------------------
class TradeStream(SupervisedStream[list[TradeRecord]]):
    kind = "trades"

    def __init__(
        self,
        *,
        ctx: FeedContext,
        config: ExchangeConfig,
        symbol: str,
        last: TradeRecord | None = None,
    ) -> None:
        super().__init__(ctx=ctx, config=config, symbol=symbol)
        self.seen = SeenTrades(last=last)

    async def consume(self, client: FeedClient) -> None:
        # Repair whenever there is history to catch up with: after a short grace (the
        # market may be quiet), and again at the first live batch, where the gap surely
        # ends: trades between the REST call and a slow subscription are not lost.
        repair_due = self.seen.last is not None
        repair_at_first_batch = repair_due
        pump = Pump(lambda: client.watch_trades(self.symbol))
        try:
            while True:
                timeout = REPAIR_GRACE_SECONDS if repair_due else self.config.quiet_seconds
                batch = await pump.next(timeout)
                if batch is None:
                    if not repair_due:
                        raise StreamQuiet(f"no trades for {self.config.quiet_seconds}s")
                    await self.repair(client)
                    repair_due = False
                    continue
                self.health.message(len(batch))
                if repair_at_first_batch:
                    await self.repair(client)
                    repair_due = repair_at_first_batch = False
                await self.accept(self.seen.fresh(batch))
        finally:
            await pump.close()

    async def repair(self, client: FeedClient) -> None:
        recovered = await trades_repair(
            client=client,
            config=self.config,
            symbol=self.symbol,
            seen=self.seen,
            accept=self.accept,
        )
        if recovered:
            self.health.gaps_repaired += 1
            self.health.trades_recovered += recovered
            logger.info(
                "%s %s: gap repaired, %d trades recovered", self.config.id, self.symbol, recovered
            )

    async def accept(self, trades: list[TradeRecord]) -> None:
        """Store (batched), publish, and fold into the live 1-minute candle."""
        if not trades:
            return
        self.ctx.writer.add(trades)
        exchange = self.config.id
        await self.ctx.publisher.publish(
            "trades", exchange, self.symbol, [trade_payload(t) for t in trades]
        )
        for candle in candles_from_trades(trades, final_before=time.time_ns() // 1_000_000):
            await self._candle_update(candle)
        if self.ctx.analytics is not None:
            await self.ctx.analytics.trades(trades)

    async def _candle_update(self, candle: CandleRecord) -> None:
        key = (self.config.id, self.symbol)
        current = self.ctx.live_candles.get(key)
        if current is not None and candle.ts < current.ts:
            return  # a repaired trade of a past minute: the writer's rebuild corrects the DB
        if current is not None and candle.ts == current.ts:
            candle = CandleRecord(
                exchange=candle.exchange,
                symbol=candle.symbol,
                ts=candle.ts,
                open=current.open,
                high=max(current.high, candle.high),
                low=min(current.low, candle.low),
                close=candle.close,
                volume=current.volume + candle.volume,
                buy_volume=current.buy_volume + candle.buy_volume,
                trade_count=current.trade_count + candle.trade_count,
                is_final=False,
            )
        elif current is not None:
            closed = CandleRecord(**{**_fields(current), "is_final": True})
            await self.ctx.publisher.publish(
                "candles_1m", self.config.id, self.symbol, candle_payload(closed)
            )
        candle = CandleRecord(**{**_fields(candle), "is_final": False})
        self.ctx.live_candles[key] = candle
        payload = candle_payload(candle)
        await self.ctx.publisher.publish("candles_1m", self.config.id, self.symbol, payload)
        await database_sync_to_async(live_candle_put)(
            exchange=self.config.id, symbol=self.symbol, candle=payload
        )


def _fields(candle: CandleRecord) -> dict[str, Any]:
    return {name: getattr(candle, name) for name in CandleRecord.__slots__}


# --- order book ---------------------------------------------------------------------------
class BookStream(SupervisedStream[BookUpdate]):
    kind = "book"

    def __init__(self, *, ctx: FeedContext, config: ExchangeConfig, symbol: str) -> None:
        super().__init__(ctx=ctx, config=config, symbol=symbol)
        self._last_snapshot = 0.0

    async def consume(self, client: FeedClient) -> None:
        async def watch() -> BookUpdate:
            while True:
                try:
                    return await client.watch_book(self.symbol, self.config.book_depth)
                except BookOutOfSync as exc:
                    # The local book missed an update: watching again subscribes anew and
                    # takes a fresh REST snapshot before any further diff is applied.
                    self.health.book_resyncs += 1
                    logger.warning("%s %s book out of sync: %s", self.config.id, self.symbol, exc)

        await self.consume_until_quiet(watch)

    async def accept(self, book: BookUpdate) -> None:
        await self.ctx.publisher.publish("book", self.config.id, self.symbol, book_payload(book))
        if self.ctx.consolidator is not None:
            await self.ctx.consolidator.book(book)
        if self.ctx.analytics is not None:
            await self.ctx.analytics.book(book)
        await database_sync_to_async(live_book_put)(update=book)
        now = time.monotonic()
        if now - self._last_snapshot >= self.ctx.book_snapshot_seconds:
            self._last_snapshot = now
            await database_sync_to_async(book_snapshot_write)(update=book)


# --- ticker -------------------------------------------------------------------------------
class TickerStream(SupervisedStream[TickerRecord]):
    kind = "ticker"

    def __init__(self, *, ctx: FeedContext, config: ExchangeConfig, symbol: str) -> None:
        super().__init__(ctx=ctx, config=config, symbol=symbol)
        self._last_store = 0.0

    async def consume(self, client: FeedClient) -> None:
        await self.consume_until_quiet(lambda: client.watch_ticker(self.symbol))

    async def accept(self, ticker: TickerRecord) -> None:
        await self.ctx.publisher.publish(
            "ticker", self.config.id, self.symbol, ticker_payload(ticker)
        )
        await database_sync_to_async(live_ticker_put)(record=ticker)
        now = time.monotonic()
        if now - self._last_store >= self.ctx.ticker_store_seconds:
            self._last_store = now
            await database_sync_to_async(tickers_upsert)(records=[ticker])
