"""Feed health as shown on GET /api/v1/exchanges, in the admin and on /readyz.

The feed runner keeps per-stream health in the cache with a TTL
(marketdata.feeds.health); an exchange no runner reported on is "unknown", and one
whose runner stopped reporting a few seconds ago is "down".
"""

from __future__ import annotations

import logging
from typing import TypedDict

from redis import RedisError

from marketdata.feeds.health import FeedSummary
from marketdata.feeds.health import feed_health as feeds_health_report

logger = logging.getLogger(__name__)


class UnknownHealth(TypedDict):
    """An exchange nobody reports on: FeedSummary's totals, all None, and no streams."""

    state: str
    connected: None
    last_message_age_ms: None
    messages_per_second: None
    gaps_repaired: None


UNKNOWN: UnknownHealth = {
    "state": "unknown",
    "connected": None,
    "last_message_age_ms": None,
    "messages_per_second": None,
    "gaps_repaired": None,
}


def feed_health(*, exchange_id: str) -> FeedSummary | UnknownHealth:
    """The exchange's feed health; "unknown" while Redis, where it lives, is unreachable
    (the exchange list is still served: it comes from PostgreSQL)."""
    try:
        return feeds_health_report(exchange_id).get(exchange_id, UNKNOWN)
    except RedisError:
        logger.warning("feed health unreadable (Redis)", exc_info=True)
        return UNKNOWN
