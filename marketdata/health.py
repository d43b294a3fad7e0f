"""Feed health as shown on GET /api/v1/exchanges.

The feed runner will publish per-stream health (connected, last message age, messages
per second, gaps repaired) to Redis; until it does, every exchange reports "unknown".
"""

from __future__ import annotations


def feed_health(*, exchange_id: str) -> dict:
    return {
        "state": "unknown",
        "connected": None,
        "last_message_age_ms": None,
        "messages_per_second": None,
        "gaps_repaired": None,
    }
