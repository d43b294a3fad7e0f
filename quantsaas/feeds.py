"""The feed runner as the product runs it: market data with live analytics and alerts.

marketdata's runner knows only market data (docs/architecture.md); this roof module
plugs in what apps above it do live, through the runner's protocols
(marketdata/feeds/plugins.py). `run_feeds` and the embedded `serve` both start it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from alerts.live import LiveAlerts
from analytics.live import LiveAnalytics
from marketdata.feeds.plugins import LiveCompanion, Plugged
from marketdata.feeds.publish import Publisher
from marketdata.feeds.runner import feeds_run
from marketdata.models import Instrument


def live_plugins(
    *, publisher: Publisher, instruments: Sequence[Instrument], kinds: frozenset[str]
) -> Plugged:
    """Alert rules hear what is published (trades, and the analytics published next to
    them); live OFI and VPIN hear trades and books and publish through that same tap."""
    companions: list[LiveCompanion] = []
    if "trades" in kinds:
        alerts = LiveAlerts(instruments=list(instruments))
        # The tap delegates everything else to the publisher it wraps.
        publisher = cast(Publisher, alerts.tap(publisher))
        companions.append(alerts)
    analytics = None
    if kinds & {"trades", "book"}:
        analytics = LiveAnalytics(publisher=publisher, instruments=list(instruments))
        companions.append(analytics)
    return Plugged(publisher=publisher, listener=analytics, companions=companions)


async def feeds_run_live(**kwargs: Any) -> None:
    """`marketdata.feeds.runner.feeds_run` with live analytics and alerts plugged in."""
    await feeds_run(plugins=live_plugins, **kwargs)
