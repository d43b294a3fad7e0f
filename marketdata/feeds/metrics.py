"""Feed runner metrics, served on METRICS_PORT by ``run_feeds``.

Read at scrape time from the runner's own objects (each stream's ``StreamHealth`` and
the ``TradeWriter``), so ingest pays nothing per message for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from marketdata.feeds.health import StreamHealth
    from marketdata.feeds.writer import TradeWriter

logger = logging.getLogger(__name__)

STREAM_LABELS = ["exchange", "kind", "symbol"]


class FeedCollector(Collector):
    def __init__(self, healths: Iterable[StreamHealth], writer: TradeWriter) -> None:
        self.healths = list(healths)
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        def family(cls: Any, name: str, doc: str) -> Any:
            return cls(name, doc, labels=STREAM_LABELS)

        messages = family(CounterMetricFamily, "quantsaas_feed_messages", "Messages received.")
        rate = family(
            GaugeMetricFamily,
            "quantsaas_feed_messages_per_second",
            "Messages per second over the last health window (about a second).",
        )
        age = family(
            GaugeMetricFamily,
            "quantsaas_feed_last_message_age_seconds",
            "Seconds since the stream's last message (for trades: the last trade).",
        )
        connected = family(GaugeMetricFamily, "quantsaas_feed_connected", "1 while connected.")
        reconnects = family(CounterMetricFamily, "quantsaas_feed_reconnects", "Reconnects.")
        gaps = family(
            CounterMetricFamily, "quantsaas_feed_gaps_repaired", "Gaps repaired from REST."
        )
        recovered = family(
            CounterMetricFamily,
            "quantsaas_feed_trades_recovered",
            "Trades a gap repair stored.",
        )
        now_ms = time.time_ns() // 1_000_000
        for h in self.healths:
            labels = [h.exchange, h.kind, h.symbol]
            messages.add_metric(labels, h.messages)
            rate.add_metric(labels, h.messages_per_second)
            if h.last_message_ms:
                age.add_metric(labels, max(0, now_ms - h.last_message_ms) / 1000)
            connected.add_metric(labels, int(h.connected))
            reconnects.add_metric(labels, h.reconnects)
            gaps.add_metric(labels, h.gaps_repaired)
            recovered.add_metric(labels, h.trades_recovered)
        yield from (messages, rate, age, connected, reconnects, gaps, recovered)
        w = self.writer
        yield CounterMetricFamily(
            "quantsaas_feed_rows_written", "Trades the writer stored.", value=w.stored
        )
        yield GaugeMetricFamily(
            "quantsaas_feed_writer_buffer", "Trades waiting to be written.", value=len(w.buffer)
        )
        yield CounterMetricFamily(
            "quantsaas_feed_trades_dropped",
            "Trades dropped from a full buffer (their ranges are recorded and backfilled).",
            value=w.dropped,
        )
        yield GaugeMetricFamily(
            "quantsaas_feed_dropped_ranges",
            "Time ranges of dropped trades not yet backfilled (recorded in Redis or noted).",
            value=_dropped_ranges(w),
        )


def _dropped_ranges(writer: TradeWriter) -> int:
    from marketdata.feeds.outage import dropped_ranges_get

    noted = sum(len(ranges) for ranges in list(writer._drops.values()))
    try:
        recorded = sum(
            len(dropped_ranges_get(exchange=exchange, symbol=symbol))
            for exchange, symbol in list(writer.instruments)
        )
    except Exception:  # Redis down: what this process still holds in memory
        return noted
    return noted + recorded


def metrics_serve(registry: CollectorRegistry, *, port: int, what: str) -> WSGIServer:
    """Serve `registry` on METRICS_ADDR:`port` (127.0.0.1 unless set: the page has no
    authentication, so it is opened to a network only on purpose, e.g. in compose)."""
    import os

    from prometheus_client import start_http_server

    addr = os.environ.get("METRICS_ADDR", "127.0.0.1")
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    logger.info("%s metrics on %s:%d", what, addr, port)
    return server


def feed_metrics_serve(
    *, port: int, healths: Iterable[StreamHealth], writer: TradeWriter
) -> WSGIServer | None:
    """The runner's metrics on `port`, from its own registry; None when port is 0."""
    if not port:
        return None
    registry = CollectorRegistry()
    registry.register(FeedCollector(healths, writer))
    return metrics_serve(registry, port=port, what="feed")
