"""Reads of billing state. Tenant data is always read for an explicit organization."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypedDict

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import ApiKey, Organization
from billing.entitlements import Entitlements, entitlements_for, subscription_grants
from billing.models import Plan, PlanOverride, StripeCustomer, Subscription, UsageDaily
from billing.usage import usage_live


def plans_public() -> QuerySet[Plan]:
    return Plan.objects.filter(is_public=True).order_by("price_cents", "pk")


def plan_get(*, code: str) -> Plan | None:
    return Plan.objects.filter(code=code, is_public=True).first()


def stripe_customer_for(*, organization: Organization) -> StripeCustomer | None:
    return StripeCustomer.objects.filter(organization=organization).first()


def subscription_current(*, organization: Organization) -> Subscription | None:
    """The subscription that grants access now, else the most recent one (or None)."""
    now = timezone.now()
    subscriptions = list(
        Subscription.objects.filter(organization=organization)
        .select_related("plan")
        .order_by("-created_at", "-pk")[:20]
    )
    granting = [s for s in subscriptions if subscription_grants(s, now=now)]
    chosen = granting or subscriptions
    return chosen[0] if chosen else None


def plan_override_active(*, organization: Organization) -> PlanOverride | None:
    return (
        PlanOverride.objects.filter(organization=organization)
        .exclude(until__lte=timezone.now())
        .select_related("plan")
        .order_by("-created_at", "-pk")
        .first()
    )


class UsageDay(TypedDict):
    """One day of a usage period (a plain dict, as the API and the usage page read it)."""

    date: date
    api_requests: int
    stream_messages: int


@dataclass(frozen=True)
class UsageSummary:
    entitlements: Entitlements
    period_start: datetime
    period_end: datetime
    api_requests: int
    stream_messages: int
    api_requests_today: int
    stream_messages_today: int
    api_keys_active: int
    days: list[UsageDay] = field(default_factory=list)


def _calendar_month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def usage_period(*, organization: Organization) -> tuple[datetime, datetime]:
    """The paid billing period when subscribed, else the calendar month (UTC)."""
    now = timezone.now()
    subscription = subscription_current(organization=organization)
    if (
        subscription is not None
        and subscription.current_period_start
        and subscription.current_period_end
        and subscription.current_period_start <= now < subscription.current_period_end
    ):
        return subscription.current_period_start, subscription.current_period_end
    return _calendar_month(now)


def usage_summary(*, organization: Organization) -> UsageSummary:
    """This period's usage against the plan: stored days plus today's live counters."""
    start, end = usage_period(organization=organization)
    today = timezone.now().date()  # UTC, like the Redis day counters
    first_day = start.date()
    stored = UsageDaily.objects.filter(
        organization=organization, date__gte=first_day, date__lt=today
    ).order_by("date")
    live = usage_live(organization=organization, day=today)
    days = [
        UsageDay(date=row.date, api_requests=row.api_requests, stream_messages=row.stream_messages)
        for row in stored
    ]
    days.append(
        UsageDay(
            date=today, api_requests=live["api_requests"], stream_messages=live["stream_messages"]
        )
    )
    totals = stored.aggregate(api=Sum("api_requests"), stream=Sum("stream_messages"))
    return UsageSummary(
        entitlements=entitlements_for(organization=organization),
        period_start=start,
        period_end=end,
        api_requests=(totals["api"] or 0) + live["api_requests"],
        stream_messages=(totals["stream"] or 0) + live["stream_messages"],
        api_requests_today=live["api_requests"],
        stream_messages_today=live["stream_messages"],
        api_keys_active=_active_api_keys(organization=organization),
        days=days,
    )


def _active_api_keys(*, organization: Organization) -> int:
    return ApiKey.objects.filter(organization=organization).active().count()
