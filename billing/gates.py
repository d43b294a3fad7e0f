"""Plan gates: what a plan lets a caller read, in one place every reader asks.

Owned by billing (a plan's limits are billing's rules) and shared by every app that
answers market data or analytics, so no app reaches into another's API for them:

- History depth: how far back a plan reads market data.
- Book depth: how many levels a side of an order book a plan reads (REST here; the
  stream applies the same `book_depth` from the entitlements on subscribe).
- Delayed plans over REST: the one rule for what "now" a caller may see. A plan with
  `stream_delay_seconds` (free: 900) receives the WebSocket stream that much late; the
  REST history must not be a way around it. Every market-data and analytics endpoint
  therefore ends its answer at the cutoff `now - delay` and builds state (book, ticker)
  as it stood at the cutoff, never from the live cache. A delayed answer carries
  `X-Data-Delay: <seconds>` so a client can tell delayed data from a quiet market.
"""

from __future__ import annotations

import math

from accounts.models import Organization
from billing.entitlements import entitlements_for, plans_allowing
from quantsaas.api.errors import PlanRequired
from quantsaas.timeutil import MINUTE_MS
from quantsaas.timeutil import now_ms as clock_ms

DAY_MS = 86_400_000
DELAY_HEADER = "X-Data-Delay"


def _history_days(organization: Organization) -> int | None:
    return entitlements_for(organization=organization).history_days


def history_boundary(*, organization: Organization, now_ms: int) -> int | None:
    """The oldest millisecond the organization's plan may read, or None for unlimited.

    Counted from the start of the current minute, so a client that computes "now minus
    N days" a moment before we do is not refused for a few milliseconds.
    """
    days = _history_days(organization)
    if days is None:
        return None
    return now_ms - now_ms % 60_000 - days * DAY_MS


def history_guard(*, organization: Organization, start_ms: int, now_ms: int) -> int | None:
    """Refuse (403 plan_required) a read that starts before the plan's history depth."""
    boundary = history_boundary(organization=organization, now_ms=now_ms)
    if boundary is None or start_ms >= boundary:
        return boundary
    needed = math.ceil((now_ms - start_ms) / DAY_MS)
    days = (now_ms - now_ms % 60_000 - boundary) // DAY_MS
    raise PlanRequired(
        f"Your plan includes {days} days of history; this request reaches back {needed} days.",
        plans=plans_allowing(
            predicate=lambda plan: plan.history_days is None or plan.history_days >= needed
        ),
    )


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


def book_depth_allowed(*, organization: Organization, depth: int | None, default: int) -> int:
    """The book depth to answer: `depth` if the plan allows it, else 403 plan_required.

    No depth asked: `default`, or the plan's depth when that is less. Refused rather
    than cut short, so a client never takes a 20-level book for the 50 levels it asked for.
    """
    allowed = entitlements_for(organization=organization).book_depth
    if depth is None:
        return min(default, allowed)
    if depth > allowed:
        raise PlanRequired(
            f"Your plan includes order books {allowed} levels deep; this request asks for {depth}.",
            plans=plans_allowing(predicate=lambda plan: plan.book_depth >= depth),
        )
    return depth
