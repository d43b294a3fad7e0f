"""Feed health as shown on GET /api/v1/exchanges, in the admin and on /readyz.

The feed runner keeps per-stream health in the cache with a TTL
(marketdata.feeds.health); an exchange no runner reported on is "unknown".
"""

from __future__ import annotations

from marketdata.feeds.health import feed_health as feeds_health_report

UNKNOWN = {
    "state": "unknown",
    "connected": None,
    "last_message_age_ms": None,
    "messages_per_second": None,
    "gaps_repaired": None,
}


def feed_health(*, exchange_id: str) -> dict:
    return feeds_health_report(exchange_id).get(exchange_id, UNKNOWN)
