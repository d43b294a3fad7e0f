"""Alerts inside the feed runner: evaluate what the runner publishes, as it publishes it.

``LiveAlerts.tap`` wraps the runner's Publisher, so the evaluator sees every trade,
OFI interval, VPIN bucket and feed status the runner sends, with no change to the
streams or the analytics: what a customer's rule is judged on is exactly what the
stream carried. The active rules are reloaded from the database every
REFRESH_SECONDS when they have changed (``active_rules_signature``), never read per
tick.

A firing goes out at once on ``alerts.<organization id>`` through the same
Publisher (the stream delivery), then a background loop stores it with its
delivery rows in one transaction and enqueues the email and webhook tasks
(alerts.services.alert_firings_record), on a thread of its own so a slow database
never holds up ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from django.db import close_old_connections

from alerts import selectors
from alerts.evaluator import Evaluator, Firing
from alerts.services import alert_firings_record
from marketdata.feeds.publish import ChannelData, FeedPublisher
from marketdata.models import Instrument
from marketdata.symbols import symbol_to_path

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

REFRESH_SECONDS = 2.0
PENDING_MAX = 10_000  # firings waiting for the database; beyond it the oldest are dropped


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def firing_record(firing: Firing) -> dict[str, Any]:
    """The public shape of a firing: the stream's record, the webhook body, the email."""
    rule = firing.rule
    symbol = symbol_to_path(rule.symbol) if rule.symbol else None
    if rule.kind == "feed_down":
        message = f"{rule.exchange} feed down for {firing.value:.0f} s"
    elif rule.kind == "percent_move":
        message = (
            f"{rule.exchange} {symbol} moved {firing.value:+.3f} % in {rule.window_seconds} s "
            f"({'rise' if rule.direction == 'above' else 'fall'} threshold {rule.threshold} %)"
        )
    else:
        label = {"price": "price", "ofi": "OFI", "vpin": "VPIN"}[rule.kind]
        message = f"{rule.exchange} {symbol} {label} crossed {rule.direction} {rule.threshold}"
    return {
        "id": uuid.uuid4().hex,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "organization_id": rule.organization_id,
        "kind": rule.kind,
        "exchange": rule.exchange,
        "symbol": symbol,
        "direction": rule.direction if rule.kind != "feed_down" else None,
        "threshold": rule.threshold if rule.kind != "feed_down" else None,
        "window_seconds": rule.window_seconds,
        "value": firing.value,
        "previous": firing.previous,
        "tick_ts": firing.tick_ts,
        "fired_ts": firing.fired_ms,
        "message": message,
    }


class AlertingPublisher:
    """The runner's Publisher, with the evaluator listening to what goes through it."""

    def __init__(self, publisher: FeedPublisher, alerts: LiveAlerts) -> None:
        self._publisher = publisher
        self._alerts = alerts

    async def publish(self, kind: str, exchange: str, symbol: str, data: ChannelData) -> None:
        await self._publisher.publish(kind, exchange, symbol, data)
        if kind in ("trades", "ofi", "vpin"):
            await self._alerts.observe(kind, exchange, symbol, data)

    async def publish_to(self, channel: str, kind: str, data: ChannelData) -> None:
        await self._publisher.publish_to(channel, kind, data)
        if kind == "status" and not isinstance(data, list):  # one summary per venue
            self._alerts.evaluator.status(data)

    def __getattr__(self, name: str) -> Any:  # flush, store, seq ... as the Publisher has them
        return getattr(self._publisher, name)


class LiveAlerts:
    def __init__(self, *, instruments: list[Instrument]) -> None:
        self.evaluator = Evaluator()
        self.publisher: FeedPublisher | None = None  # set by tap()
        self._exchanges = sorted({i.exchange_id for i in instruments})
        self._symbols = {(i.exchange_id, i.ccxt_symbol) for i in instruments}
        self._signature: tuple[int, datetime | None, int | None] | None = None
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        # One thread of its own for the database: never queued behind the trade writer.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-db")
        self.fired = 0
        self.dropped = 0

    def tap(self, publisher: FeedPublisher) -> AlertingPublisher:
        self.publisher = publisher
        return AlertingPublisher(publisher, self)

    async def _db(self, fn: Callable[..., _T], **kwargs: Any) -> _T:
        def call() -> _T:
            # The connection goes back after each call: a thread that keeps one holds a
            # pool slot for as long as it lives, and outlives this object.
            close_old_connections()
            try:
                return fn(**kwargs)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def refresh(self) -> None:
        """Reload the rules if any changed; a failure keeps the rules already loaded."""
        try:
            signature = await self._db(selectors.active_rules_signature, exchanges=self._exchanges)
            if signature == self._signature:
                return
            rules = await self._db(
                selectors.active_rules, exchanges=self._exchanges, symbols=self._symbols
            )
        except Exception:  # alerts must never stop ingest
            logger.warning("reloading alert rules failed", exc_info=True)
            return
        self.evaluator.rules_set(rules)
        self._signature = signature
        logger.info("alerts: %d active rules loaded", len(rules))

    async def start(self) -> None:
        await self.refresh()

    async def observe(self, kind: str, exchange: str, symbol: str, data: ChannelData) -> None:
        records = data if isinstance(data, list) else [data]
        now = _now_ms()
        if kind == "trades":
            fired = self.evaluator.trades(exchange, symbol, records, now)
        else:
            fired = self.evaluator.metric(kind, exchange, symbol, records, now)
        if fired:
            await self._emit(fired)

    async def _emit(self, fired: list[Firing]) -> None:
        if self.publisher is None:
            raise RuntimeError("LiveAlerts.tap() must wrap the publisher before firings")
        for firing in fired:
            record = firing_record(firing)
            await self.publisher.publish_to(f"alerts.{record['organization_id']}", "alerts", record)
            self._pending.append(record)
        self.fired += len(fired)
        if len(self._pending) > PENDING_MAX:
            self.dropped += len(self._pending) - PENDING_MAX
            del self._pending[: len(self._pending) - PENDING_MAX]
        self._wake.set()

    async def _store(self) -> None:
        records, self._pending = self._pending, []
        if not records:
            return
        try:
            await self._db(alert_firings_record, records=records)
        except Exception:  # kept to retry on the next turn; the stream already has them
            logger.warning("storing %d alert firings failed", len(records), exc_info=True)
            self._pending[:0] = records

    async def run(self, stop: asyncio.Event) -> None:
        """Store firings as they come; reload rules and judge feed health every
        REFRESH_SECONDS, until `stop`; then store what is left."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + REFRESH_SECONDS
        try:
            while not stop.is_set():
                timeout = max(0.0, min(next_refresh - loop.time(), 1.0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                await self._store()
                fired = self.evaluator.feeds_check(_now_ms())
                if fired:
                    await self._emit(fired)
                if loop.time() >= next_refresh:
                    await self.refresh()
                    next_refresh = loop.time() + REFRESH_SECONDS
        finally:
            await self._store()
            self._executor.shutdown(wait=False)
