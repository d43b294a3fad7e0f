"""Entitlements: overrides, subscription statuses, plans_allowing, cache invalidation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.entitlements import entitlements_for, plans_allowing
from billing.models import Plan, StripeCustomer, Subscription
from billing.services.overrides import plan_override_grant

pytestmark = pytest.mark.django_db


def _subscription(organization, *, plan: str, status: str, **fields) -> Subscription:
    StripeCustomer.objects.get_or_create(
        organization=organization, defaults={"stripe_customer_id": f"cus_{organization.pk}"}
    )
    return Subscription.objects.create(
        organization=organization,
        stripe_subscription_id=f"sub_{organization.pk}_{status}",
        stripe_customer_id=f"cus_{organization.pk}",
        plan=Plan.objects.get(code=plan),
        status=status,
        current_period_end=timezone.now() + timedelta(days=20),
        **fields,
    )


def test_a_new_organization_gets_the_delayed_free_plan(acme):
    entitlements = entitlements_for(organization=acme)
    assert entitlements.plan == "free"
    assert entitlements.status == "none"
    assert entitlements.stream_delay_seconds == 900
    assert (entitlements.requests_per_minute, entitlements.api_keys) == (60, 1)


@pytest.mark.parametrize(
    ("status", "plan"),
    [
        ("active", "pro"),
        ("trialing", "pro"),
        ("past_due", "pro"),
        ("canceled", "free"),
        ("unpaid", "free"),
        ("incomplete", "free"),
        ("incomplete_expired", "free"),
    ],
)
def test_stripe_status_decides_the_plan(acme, status, plan):
    _subscription(acme, plan="pro", status=status, past_due_since=timezone.now())
    assert entitlements_for(organization=acme).plan == plan


def test_override_beats_the_subscription_until_it_expires(acme, alice):
    subscription = _subscription(acme, plan="pro", status="active")
    override = plan_override_grant(
        organization=acme,
        plan=Plan.objects.get(code="enterprise"),
        reason="Pilot for the research team",
        granted_by=alice,
        until=timezone.now() + timedelta(days=1),
    )
    granted = entitlements_for(organization=acme)
    assert (granted.plan, granted.status, granted.history_days) == ("enterprise", "override", None)

    override.until = timezone.now() - timedelta(seconds=1)
    override.save()
    assert entitlements_for(organization=acme).plan == "pro"

    subscription.status = "canceled"
    subscription.save()
    assert entitlements_for(organization=acme).plan == "free"


def test_changes_apply_at_once_despite_the_cache(acme, alice):
    assert entitlements_for(organization=acme).plan == "free"  # now cached
    plan_override_grant(
        organization=acme, plan=Plan.objects.get(code="pro"), reason="support", granted_by=alice
    )
    assert entitlements_for(organization=acme).plan == "pro"


def test_plans_allowing_names_the_cheapest_first():
    assert plans_allowing(predicate=lambda plan: plan.api_keys > 1) == ["pro", "enterprise"]
    assert plans_allowing(predicate=lambda plan: plan.history_days is None) == ["enterprise"]
    assert plans_allowing(predicate=lambda plan: plan.requests_per_minute > 10**9) == []


def test_the_free_plan_is_recreated_if_an_operator_deleted_it(acme):
    Plan.objects.filter(code="free").delete()
    assert entitlements_for(organization=acme).plan == "free"
