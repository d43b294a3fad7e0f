"""Queue depths, read when the worker's metrics are scraped: the broker's waiting
messages per queue and the backtests still waiting for a worker."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class QueueCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "quantsaas_celery_queue_depth", "Messages waiting in the broker.", labels=["queue"]
        )
        try:
            for queue, count in _broker_depths().items():
                depth.add_metric([queue], count)
        except Exception:
            logger.warning("metrics: broker queue depth unavailable", exc_info=True)
        yield depth
        try:
            from django.db import connection

            from analytics.models import Backtest

            queued = Backtest.objects.filter(status=Backtest.Status.QUEUED).count()
            running = Backtest.objects.filter(status=Backtest.Status.RUNNING).count()
            connection.close()  # the scrape thread's connection goes back
        except Exception:
            logger.warning("metrics: backtest counts unavailable", exc_info=True)
            return
        yield GaugeMetricFamily(
            "quantsaas_backtests_queued", "Backtests waiting for a worker.", value=queued
        )
        yield GaugeMetricFamily(
            "quantsaas_backtests_running", "Backtests a worker is running.", value=running
        )


def _broker_depths() -> dict[str, int]:
    """LLEN of each queue the worker consumes (Redis broker: one list per queue)."""
    from quantsaas.celery import app

    names = [q.name for q in app.amqp.queues.values()] or [app.conf.task_default_queue]
    with app.connection_for_read() as conn:
        # kombu's Redis transport channel has the client; the stubs know the base channel.
        client = conn.default_channel.client  # type: ignore[attr-defined]
        return {name: int(client.llen(name)) for name in names}
