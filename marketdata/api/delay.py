"""Delayed plans over REST: the one rule for what "now" a caller may see.

A plan with `stream_delay_seconds` (free: 900) receives the WebSocket stream that much
late; the REST history must not be a way around it. Every market-data and analytics
endpoint therefore ends its answer at the cutoff `now - delay` and builds state (book,
ticker) as it stood at the cutoff, never from the live cache. A delayed answer carries
`X-Data-Delay: <seconds>` so a client can tell delayed data from a quiet market.
"""

from __future__ import annotations

from accounts.models import Organization
from billing.entitlements import entitlements_for
from quantsaas.timeutil import MINUTE_MS
from quantsaas.timeutil import now_ms as clock_ms

DELAY_HEADER = "X-Data-Delay"


def data_delay_seconds(organization: Organization) -> int:
    """How many seconds behind real time the organization's plan reads (0 = real time)."""
    return max(0, entitlements_for(organization=organization).stream_delay_seconds or 0)


def realtime_cutoff_ms(organization: Organization, *, now_ms: int | None = None) -> int | None:
    """The newest instant (exclusive, ms) the organization may see, or None for real time.

    Data at or after the cutoff is real-time data for this plan and must not be answered,
    not even indirectly through an aggregate (a candle, an OFI interval, 24 h stats).
    """
    delay = data_delay_seconds(organization)
    if delay == 0:
        return None
    return (clock_ms() if now_ms is None else now_ms) - delay * 1000


def complete_before(cutoff_ms: int, *, unit_ms: int = MINUTE_MS) -> int:
    """The end of the last whole `unit_ms` period before the cutoff.

    A stored aggregate (a 1-minute candle, an OFI second) that opened at or after this
    instant may hold data from after the cutoff, so delayed reads stop here.
    """
    return cutoff_ms - cutoff_ms % unit_ms
