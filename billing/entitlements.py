"""The one place that answers "what may this organization do now".

Inputs: an operator's active override (wins outright), else the subscription
that grants access according to its Stripe status, else the free plan.
The answer is cached briefly; saving a subscription or override invalidates
it (billing.signals), so an upgrade or downgrade applies at once. Editing a
plan's limits reaches organizations within the cache time (a minute).

Every API request asks (rate limit, delay, history depth), so each process also
keeps answers for BILLING_ENTITLEMENTS_LOCAL_SECONDS (one second): an
invalidation applies at once in the process that made it and within that second
in the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accounts.models import Organization
from billing.models import FREE_PLAN_CODE, Plan, PlanOverride, Subscription, SubscriptionStatus
from quantsaas.cache import LocalCache

logger = logging.getLogger(__name__)

# Statuses that grant the subscribed plan outright; past_due grants it for the grace period.
GRANTING_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})
STATUS_NONE = "none"
STATUS_OVERRIDE = "override"

# The free plan as seeded; used only if an operator deleted the row, so nothing crashes.
FREE_PLAN_DEFAULTS = {
    "name": "Free",
    "description": "Delayed data to try the API.",
    "price_cents": 0,
    "requests_per_minute": 60,
    "ws_connections": 1,
    "ws_subscriptions": 5,
    "stream_delay_seconds": 900,
    "history_days": 7,
    "api_keys": 1,
    "analytics": True,
    "backtests_per_day": 5,
    "alert_rules": 3,
    "book_depth": 20,
    "stream_conflate_floor_ms": 1000,
}


@dataclass(frozen=True)
class Entitlements:
    plan: str  # plan code: "free", "pro", "enterprise"
    plan_name: str
    status: str  # the subscription status the plan came from ("none" for free)
    requests_per_minute: int
    ws_connections: int
    ws_subscriptions: int
    stream_delay_seconds: int
    history_days: int | None  # None = unlimited
    api_keys: int
    analytics: bool
    backtests_per_day: int
    # Defaulted: answers cached before these fields existed still load.
    alert_rules: int = 3
    book_depth: int = 50  # most levels a side of a book (REST and stream)
    stream_conflate_floor_ms: int = 0  # least conflate_ms of a stream subscription

    @classmethod
    def from_plan(cls, plan: Plan, *, status: str) -> Entitlements:
        return cls(
            plan=plan.code,
            plan_name=plan.name,
            status=status,
            requests_per_minute=plan.requests_per_minute,
            ws_connections=plan.ws_connections,
            ws_subscriptions=plan.ws_subscriptions,
            stream_delay_seconds=plan.stream_delay_seconds,
            history_days=plan.history_days,
            api_keys=plan.api_keys,
            analytics=plan.analytics,
            backtests_per_day=plan.backtests_per_day,
            alert_rules=plan.alert_rules,
            book_depth=plan.book_depth,
            stream_conflate_floor_ms=plan.stream_conflate_floor_ms,
        )


def free_plan() -> Plan:
    plan, _ = Plan.objects.get_or_create(code=FREE_PLAN_CODE, defaults=FREE_PLAN_DEFAULTS)
    return plan


def subscription_grants(subscription: Subscription, *, now: datetime) -> bool:
    """Whether this subscription's Stripe state entitles the organization to its plan."""
    if subscription.plan_id is None:
        return False
    if subscription.status in GRANTING_STATUSES:
        # Stripe ends a cancel-at-period-end subscription with a webhook; if that webhook
        # is late we still never give access past the period that was paid for.
        ended = (
            subscription.current_period_end is not None and subscription.current_period_end <= now
        )
        return not (subscription.cancel_at_period_end and ended)
    if subscription.status == SubscriptionStatus.PAST_DUE:
        since = subscription.past_due_since or now
        grace = timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
        return now < since + grace
    return False  # canceled, unpaid, incomplete, incomplete_expired, paused


def entitlements_compute(
    *, organization: Organization, now: datetime | None = None
) -> Entitlements:
    """Uncached derivation; entitlements_for is what callers use."""
    now = now or timezone.now()
    override = (
        PlanOverride.objects.filter(organization=organization)
        .exclude(until__lte=now)
        .select_related("plan")
        .order_by("-created_at", "-pk")
        .first()
    )
    if override is not None:
        return Entitlements.from_plan(override.plan, status=STATUS_OVERRIDE)
    subscriptions = Subscription.objects.filter(organization=organization).select_related("plan")
    for subscription in subscriptions.order_by("-created_at", "-pk"):
        # subscription_grants refuses a subscription without a plan; the test is for typing.
        if subscription.plan is not None and subscription_grants(subscription, now=now):
            return Entitlements.from_plan(subscription.plan, status=subscription.status)
    return Entitlements.from_plan(free_plan(), status=STATUS_NONE)


def _cache_key(organization_id: int) -> str:
    return f"billing:entitlements:{organization_id}"


_local = LocalCache(seconds=1.0)


def entitlements_for(*, organization: Organization) -> Entitlements:
    """What `organization` may do now; cached for BILLING_ENTITLEMENTS_CACHE_SECONDS."""
    local: Entitlements | None = _local.get(organization.pk)
    if local is not None:
        return local
    mark = _local.mark()
    entitlements = _entitlements_shared(organization)
    _local.set(
        organization.pk, entitlements, settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS, since=mark
    )
    return entitlements


# What an invalidation leaves in place of the answer for a while, as the API-key cache
# does (accounts.api_key_cache). A request that computed the answer just before a
# downgrade would otherwise store the old plan after the invalidation: stores only
# ever add (SET NX), so they cannot replace the tombstone, and readers treat it as a
# miss. While it lasts every process recomputes (one query, kept locally a second).
TOMBSTONE = "changed"
TOMBSTONE_SECONDS = 30


def _entitlements_shared(organization: Organization) -> Entitlements:
    key = _cache_key(organization.pk)
    try:
        cached = cache.get(key)
    except Exception:  # the cache is an optimisation: an outage must not take the API down
        logger.warning("entitlements cache unavailable", exc_info=True)
        cached = None
    if cached is not None and cached != TOMBSTONE:
        return Entitlements(**cached)
    entitlements = entitlements_compute(organization=organization)
    try:
        cache.add(key, asdict(entitlements), settings.BILLING_ENTITLEMENTS_CACHE_SECONDS)
    except Exception:
        logger.warning("entitlements cache unavailable", exc_info=True)
    return entitlements


def entitlements_invalidate(*, organization_id: int) -> None:
    _local.pop(organization_id)
    try:
        cache.set(_cache_key(organization_id), TOMBSTONE, TOMBSTONE_SECONDS)
    except Exception:
        logger.warning("entitlements cache unavailable", exc_info=True)


def plans_allowing(*, predicate: Callable[[Plan], bool]) -> list[str]:
    """Codes of the offered plans for which `predicate` holds, cheapest first.

    Used to name the plan that allows something in 403 plan_required answers.
    """
    plans = Plan.objects.filter(is_public=True).order_by("price_cents", "pk")
    return [plan.code for plan in plans if predicate(plan)]
