"""Stream metrics, read from the process's hubs when Prometheus scrapes.

The hub's hot paths stay untouched: connections, lag and the messages a hub received
are read at scrape time. Two numbers cannot be read that way and are counted here:
refusals (one increment in the consumer's ``_refuse``) and data frames delivered, which a
connection counts until it closes (then its hub's ``_usage`` holds them) or the hub's usage
flush (every 5 s, and on drain) takes them, so the flush is wrapped to add up both first
(``hub_flush_counting``): every delivered frame passes through exactly one flush.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from marketdata.streaming.hub import Hub

UsageFlush = Callable[["Hub"], Coroutine[Any, Any, None]]

logger = logging.getLogger(__name__)

STREAM_REFUSALS = Counter(
    "quantsaas_stream_refusals",
    "WebSocket connections refused or closed by the consumer, by close code.",
    ["code"],
)
STREAM_LAGGED = Counter(
    "quantsaas_stream_lagged",
    "Lagged notices sent: a connection fell behind on a channel and skipped messages.",
)
STREAM_LAGGED_MISSED = Counter(
    "quantsaas_stream_lagged_missed",
    "Messages skipped for connections that fell behind (each reported in a lagged notice).",
)
_flushed_frames = 0  # data frames counted by every usage flush of this process


def _unflushed(hub: Hub) -> int:
    """Frames delivered and not yet flushed: on open connections, and of closed ones."""
    return sum(conn.delivered for conn in list(hub.connections)) + sum(list(hub._usage.values()))


def _frames_flushing(hub: Hub) -> None:
    global _flushed_frames
    _flushed_frames += _unflushed(hub)


def hub_flush_counting() -> None:
    """Count delivered frames just before the hub's usage flush takes them.

    Idempotent. Wraps a method that runs every few seconds, never per message.
    """
    from marketdata.streaming.hub import Hub

    if not getattr(Hub.usage_flush, "_counts_frames", False):
        Hub.usage_flush = _counting(Hub.usage_flush)  # type: ignore[method-assign, assignment]  # on purpose, once


def _counting(original: UsageFlush) -> UsageFlush:
    @functools.wraps(original)
    async def counting(self: Hub) -> None:
        _frames_flushing(self)
        await original(self)

    counting._counts_frames = True  # type: ignore[attr-defined]  # a marker on the function
    return counting


def _plans(organization_ids: set[int]) -> dict[int, str]:
    """Plan code per organization, from the entitlements cache (a query on a miss)."""
    from accounts.models import Organization
    from billing.entitlements import entitlements_for

    plans: dict[int, str] = {}
    for organization in Organization.objects.filter(pk__in=organization_ids):
        try:
            plans[organization.pk] = entitlements_for(organization=organization).plan
        except Exception:  # a scrape must not fail because one lookup did
            logger.warning("metrics: plan of organization %s unknown", organization.pk)
    return plans


class StreamCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        from marketdata.streaming.hub import hubs_all

        hubs = hubs_all()
        conns = [conn for hub in hubs for conn in list(hub.connections)]
        try:
            plans = _plans({conn.organization_id for conn in conns}) if conns else {}
        except Exception:  # the database is down: connections still count, plan unknown
            logger.warning("metrics: plans unavailable", exc_info=True)
            plans = {}
        by_plan: dict[str, int] = {}
        for conn in conns:
            plan = plans.get(conn.organization_id, "unknown")
            by_plan[plan] = by_plan.get(plan, 0) + 1
        open_ = GaugeMetricFamily(
            "quantsaas_stream_connections", "Open WebSocket connections, by plan.", labels=["plan"]
        )
        for plan, count in sorted(by_plan.items()):
            open_.add_metric([plan], count)
        yield open_
        yield CounterMetricFamily(
            "quantsaas_stream_frames_delivered",
            "Data frames queued to clients (one frame may carry several messages).",
            value=_flushed_frames + sum(_unflushed(hub) for hub in hubs),
        )
        yield CounterMetricFamily(
            "quantsaas_stream_messages_received",
            "Messages (ticks) the process's hubs read from the stream store, to fan out.",
            value=sum(hub.messages_received for hub in hubs),
        )
        yield GaugeMetricFamily(
            "quantsaas_stream_connections_lagging",
            "Connections whose queue is full: they are sent `lagged` notices, not data.",
            value=sum(conn.lagging_since is not None for conn in conns),
        )
        yield GaugeMetricFamily(
            "quantsaas_stream_lagged_messages",
            "Messages skipped for lagging connections and not yet reported to them.",
            value=sum(entry[0] for conn in conns for entry in list(conn.lag.values())),
        )
        yield GaugeMetricFamily(
            "quantsaas_stream_channels_joined",
            "Channels the process's hubs read from the store.",
            value=sum(len(hub.joined) for hub in hubs),
        )
