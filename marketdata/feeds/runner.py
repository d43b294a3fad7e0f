"""The feed runner: one asyncio program streaming every instrument of its shard.

``feeds_run`` is the single entry point, used by ``manage.py run_feeds`` (one
process per shard in the real topology) and by the embedded mode of
``make run``, which runs it inside the web process on the same event loop.
Both plug live analytics and alerts in through ``plugins`` (feeds/plugins.py):
the runner itself knows only market data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from django.conf import settings

from marketdata.feeds.base import FeedClient
from marketdata.feeds.config import exchange_config
from marketdata.feeds.consolidator import Consolidator
from marketdata.feeds.health import HEALTH_INTERVAL_SECONDS, StreamHealth, health_store
from marketdata.feeds.metrics import feed_metrics_serve
from marketdata.feeds.plugins import LivePlugins, Plugged
from marketdata.feeds.publish import Publisher
from marketdata.feeds.repair import MAX_LOOKBACK_MS
from marketdata.feeds.status import StatusReporter
from marketdata.feeds.streams import BookStream, FeedContext, TickerStream, TradeStream
from marketdata.feeds.writer import TradeWriter
from marketdata.models import Instrument, Trade
from marketdata.records import TradeRecord
from quantsaas.db import database_sync_to_async, in_db_thread
from quantsaas.timeutil import dt_to_ms, ms_to_dt, now_ms

if TYPE_CHECKING:  # both imported only when an exchange needs them (ccxt is heavy)
    from marketdata.feeds.ccxt_client import Markets
    from marketdata.feeds.sim_client import SimHub

logger = logging.getLogger(__name__)

KINDS = ("trades", "book", "ticker")
PROGRESS_LOG_SECONDS = 30.0


class ClientFactory:
    """Makes a fresh client per (re)connect; loads each exchange's markets once."""

    def __init__(self) -> None:
        self._markets: dict[str, Markets] = {}
        self._lock = asyncio.Lock()
        self._sim: SimHub | None = None

    async def __call__(self, exchange_id: str) -> FeedClient:
        if exchange_id == "sim":
            from marketdata.feeds.sim_client import SimFeedClient, SimHub

            if self._sim is None:
                self._sim = SimHub()
            return SimFeedClient(self._sim)
        from marketdata.feeds.ccxt_client import CcxtFeedClient, markets_load

        config = exchange_config(exchange_id)
        async with self._lock:
            if exchange_id not in self._markets:
                self._markets[exchange_id] = await markets_load(config)
        return CcxtFeedClient(config, markets=self._markets[exchange_id])

    async def aclose(self) -> None:
        if self._sim is not None:
            await self._sim.close()


def instruments_for(*, shard: int | None, exchange: str | None) -> list[Instrument]:
    instruments = Instrument.objects.select_related("exchange").filter(
        active=True, exchange__enabled=True
    )
    if shard is not None:
        instruments = instruments.filter(feed_shard=shard)
    if exchange is not None:
        instruments = instruments.filter(exchange_id=exchange)
    return list(instruments.order_by("exchange_id", "ccxt_symbol"))


def last_trades(instruments: Iterable[Instrument]) -> dict[tuple[str, str], TradeRecord]:
    """The newest stored trade per instrument (within the repair lookback): where the
    previous run stopped, so a restart repairs its own downtime."""
    since = ms_to_dt(now_ms() - MAX_LOOKBACK_MS)
    out = {}
    for instrument in instruments:
        row = (
            Trade.objects.filter(instrument=instrument, ts__gte=since)
            .order_by("-ts", "-id")
            .values_list("trade_id", "ts", "price", "size", "side")
            .first()
        )
        if row:
            trade_id, ts, price, size, side = row
            key = (instrument.exchange_id, instrument.ccxt_symbol)
            out[key] = TradeRecord(
                exchange=key[0],
                symbol=key[1],
                trade_id=trade_id,
                ts=dt_to_ms(ts),
                price=price,
                size=size,
                side=side,
            )
    return out


async def feeds_run(
    *,
    shard: int | None = None,
    exchange: str | None = None,
    stop_event: asyncio.Event | None = None,
    client_factory: Callable[[str], Awaitable[FeedClient]] | None = None,
    kinds: Iterable[str] = KINDS,
    plugins: LivePlugins | None = None,
) -> None:
    """Stream the active instruments of `shard` (all shards if None) until `stop_event`.

    `plugins` builds the live consumers (analytics, alerts) that hear the streams.
    """
    stop = stop_event or asyncio.Event()
    instruments = await database_sync_to_async(instruments_for)(shard=shard, exchange=exchange)
    if not instruments:
        logger.warning("no active instruments for shard=%s exchange=%s", shard, exchange)
    last = await database_sync_to_async(last_trades)(instruments)
    factory = client_factory or ClientFactory()
    # The writer backfills, through the same clients, trades it had to drop in an outage.
    writer = TradeWriter(
        instruments={(i.exchange_id, i.ccxt_symbol): i for i in instruments}, client_for=factory
    )
    kinds = frozenset(kinds)
    plugged = Plugged(publisher=Publisher())
    if plugins is not None:
        plugged = plugins(publisher=plugged.publisher, instruments=instruments, kinds=kinds)
    publisher = plugged.publisher
    for companion in plugged.companions:
        await companion.start()
    ctx = FeedContext(
        publisher=publisher,
        writer=writer,
        client_for=factory,
        stop=stop,
        analytics=plugged.listener,
    )
    streams: list[TradeStream | BookStream | TickerStream] = []
    for instrument in instruments:
        config = exchange_config(instrument.exchange_id)
        symbol = instrument.ccxt_symbol
        if "trades" in kinds:
            streams.append(
                TradeStream(
                    ctx=ctx,
                    config=config,
                    symbol=symbol,
                    last=last.get((instrument.exchange_id, symbol)),
                )
            )
        if "book" in kinds:
            streams.append(BookStream(ctx=ctx, config=config, symbol=symbol))
        if "ticker" in kinds:
            streams.append(TickerStream(ctx=ctx, config=config, symbol=symbol))
    logger.info(
        "feed runner: shard=%s, %d instruments, %d streams",
        "all" if shard is None else shard,
        len(instruments),
        len(streams),
    )
    # Before any task starts: a port that cannot be bound stops the runner cleanly.
    metrics = feed_metrics_serve(
        port=settings.METRICS_PORT, healths=[s.health for s in streams], writer=writer
    )
    writer_stop = asyncio.Event()
    tasks = [
        asyncio.create_task(s.run(), name=f"{s.health.kind}:{s.health.exchange}:{s.symbol}")
        for s in streams
    ]
    writer_task = asyncio.create_task(writer.run(writer_stop), name="trade-writer")
    # Companions stop with the writer: after the streams' last events (analytics store
    # their last intervals, alerts their last firings).
    companion_tasks = [
        asyncio.create_task(companion.run(writer_stop), name=f"live-{type(companion).__name__}")
        for companion in plugged.companions
    ]
    healths = [s.health for s in streams]
    consolidator_task = None
    if "book" in kinds:
        consolidator = Consolidator(publisher, instruments, healths)
        if consolidator.active:
            ctx.consolidator = consolidator
            consolidator_task = asyncio.create_task(consolidator.run(stop), name="consolidator")
    status = StatusReporter(publisher)
    health_task = asyncio.create_task(
        _health_loop(healths, stop, writer, status), name="feed-health"
    )
    try:
        await stop.wait()
    finally:
        logger.info("feed runner stopping")
        for task in tasks:
            task.cancel()
        if consolidator_task is not None:
            tasks.append(consolidator_task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if hasattr(factory, "aclose"):
            await factory.aclose()
        if ctx.consolidator is not None:
            await ctx.consolidator.stop()  # consolidated channels say no venue is left
        if hasattr(ctx.publisher, "flush"):
            await ctx.publisher.flush()  # the last batch of each channel goes out too
        writer_stop.set()  # only now: every trade the streams accepted gets flushed
        await asyncio.gather(writer_task, health_task, return_exceptions=True)
        await asyncio.gather(*companion_tasks, return_exceptions=True)
        for health in healths:
            health.connected = False
        await _health_write(healths)
        with contextlib.suppress(Exception):  # clients hear the feed is going away
            await status.report(healths, force=True)
            await publisher.flush()
        logger.info("feed runner stopped; %d new trades stored", writer.stored)
        if metrics is not None:
            metrics.shutdown()


async def _health_write(healths: list[StreamHealth]) -> None:
    try:
        # Its own thread, not the one database calls share: a database outage stalls the
        # writer there, and health must keep flowing while the feed rides it out.
        await in_db_thread(health_store)(healths)
    except Exception:  # health is best effort; the data path must not depend on it
        logger.warning("writing feed health failed", exc_info=True)


async def _health_loop(
    healths: list[StreamHealth], stop: asyncio.Event, writer: TradeWriter, status: StatusReporter
) -> None:
    loop = asyncio.get_running_loop()
    next_log = loop.time() + PROGRESS_LOG_SECONDS
    while not stop.is_set():
        await _health_write(healths)
        try:
            await status.report(healths)
        except Exception:  # status is best effort, like health
            logger.warning("publishing feed status failed", exc_info=True)
        if loop.time() >= next_log:
            next_log = loop.time() + PROGRESS_LOG_SECONDS
            logger.info(
                "feeds: %d/%d streams connected, %d messages, %d trades stored, %d gaps repaired",
                sum(h.connected for h in healths),
                len(healths),
                sum(h.messages for h in healths),
                writer.stored,
                sum(h.gaps_repaired for h in healths),
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEALTH_INTERVAL_SECONDS)
