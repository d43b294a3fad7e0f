"""Keeping local subscriptions equal to Stripe's.

Every path that learns "something changed" (webhook, success page, reconcile
task, admin action) calls subscription_sync, which re-reads the subscription
from Stripe and stores what Stripe says now. Late, repeated and out-of-order
events are therefore harmless: the last sync always writes the current truth.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from billing.models import Plan, StripeCustomer, Subscription, SubscriptionStatus
from billing.stripe_client import stripe_client

logger = logging.getLogger(__name__)


class UnknownCustomer(Exception):
    """Stripe names a customer that belongs to none of our organizations."""


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _first_item(data: dict[str, Any]) -> dict[str, Any]:
    items = (data.get("items") or {}).get("data") or []
    return items[0] if items else {}


def plan_for_price(price_id: str) -> Plan | None:
    """The plan sold with `price_id`: a row's own price id, else the environment's map."""
    if not price_id:
        return None
    plan = Plan.objects.filter(stripe_price_id=price_id).first()
    if plan is not None:
        return plan
    codes = [code for code, price in settings.BILLING_STRIPE_PRICES.items() if price == price_id]
    return Plan.objects.filter(code__in=codes).first() if codes else None


def _organization_for(data: dict[str, Any]) -> Organization:
    customer_id = data["customer"] if isinstance(data["customer"], str) else data["customer"]["id"]
    customer = StripeCustomer.objects.select_related("organization").filter(
        stripe_customer_id=customer_id
    )
    if customer.exists():
        return customer.get().organization
    raise UnknownCustomer(f"Stripe customer {customer_id} belongs to no organization.")


def subscription_store(*, data: dict[str, Any]) -> Subscription:
    """Write Stripe's subscription object (a plain dict) into our row for it."""
    organization = _organization_for(data)
    item = _first_item(data)
    price_id = (item.get("price") or {}).get("id", "")
    plan = plan_for_price(price_id)
    if plan is None and (data.get("metadata") or {}).get("plan"):
        plan = Plan.objects.filter(code=data["metadata"]["plan"]).first()
    status = data["status"]
    now = timezone.now()
    subscription = (
        Subscription.objects.select_for_update().filter(stripe_subscription_id=data["id"]).first()
    )
    if subscription is None:
        subscription = Subscription(
            stripe_subscription_id=data["id"], organization=organization, created_at=now
        )
    was_past_due = subscription.status == SubscriptionStatus.PAST_DUE
    subscription.organization = organization
    subscription.stripe_customer_id = StripeCustomer.objects.get(
        organization=organization
    ).stripe_customer_id
    subscription.stripe_price_id = price_id
    subscription.plan = plan
    subscription.status = status
    # Since API 2025-03-31 the period lives on the subscription item; older versions
    # kept it on the subscription itself.
    subscription.current_period_start = _timestamp(
        item.get("current_period_start") or data.get("current_period_start")
    )
    subscription.current_period_end = _timestamp(
        item.get("current_period_end") or data.get("current_period_end")
    )
    subscription.cancel_at_period_end = bool(data.get("cancel_at_period_end"))
    subscription.canceled_at = _timestamp(data.get("canceled_at"))
    if status == SubscriptionStatus.PAST_DUE:
        # The grace period starts at the first sync that sees past_due, not at every one.
        if not was_past_due or subscription.past_due_since is None:
            subscription.past_due_since = now
    else:
        subscription.past_due_since = None
    subscription.synced_at = now
    subscription.save()
    return subscription


@transaction.atomic
def subscription_sync(*, stripe_subscription_id: str) -> Subscription | None:
    """Re-read one subscription from Stripe and store it; None if Stripe has never heard of it."""
    try:
        data = stripe_client().v1.subscriptions.retrieve(stripe_subscription_id).to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        # Gone from Stripe (deleted test data, wrong mode): stop granting anything for it.
        rows = Subscription.objects.select_for_update().filter(
            stripe_subscription_id=stripe_subscription_id
        )
        for row in rows:
            row.status = SubscriptionStatus.CANCELED
            row.past_due_since = None
            row.synced_at = timezone.now()
            row.save()
        return None
    return subscription_store(data=data)


def customer_reconcile(*, stripe_customer_id: str) -> list[Subscription]:
    """Sync every subscription Stripe has for a customer, including ones we never heard of."""
    client = stripe_client()
    page = client.v1.subscriptions.list(
        params={"customer": stripe_customer_id, "status": "all", "limit": 100}
    )
    synced = []
    for item in page.auto_paging_iter():
        with transaction.atomic():
            synced.append(subscription_store(data=item.to_dict()))
    # Rows Stripe no longer lists (deleted objects) are re-read one by one.
    listed = {s.stripe_subscription_id for s in synced}
    stale = Subscription.objects.filter(stripe_customer_id=stripe_customer_id).exclude(
        Q(stripe_subscription_id__in=listed) | Q(status=SubscriptionStatus.CANCELED)
    )
    for stripe_subscription_id in stale.values_list("stripe_subscription_id", flat=True):
        subscription_sync(stripe_subscription_id=stripe_subscription_id)
    return synced
