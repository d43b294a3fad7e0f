"""History depth by plan: the only thing that limits who reads which market data."""

from __future__ import annotations

import math

from accounts.models import Organization
from billing.entitlements import entitlements_for, plans_allowing
from quantsaas.api.errors import PlanRequired

DAY_MS = 86_400_000


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
