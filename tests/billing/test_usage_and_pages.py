"""Usage counting and roll-up, the API key allowance, pages with and without Stripe, tenancy."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing.models import UsageDaily
from billing.tasks import usage_rollup
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_usage_counts_api_requests_against_the_plan(alice_client):
    for _ in range(3):
        alice_client.get("/api/v1/usage")
    body = alice_client.get("/api/v1/usage").json()

    assert body["plan"]["code"] == "free"
    assert body["limits"]["requests_per_minute"] == 60
    assert body["usage"]["api_requests_today"] == 4  # this request included
    assert body["usage"]["api_requests"] == 4
    assert body["days"][-1]["date"] == timezone.now().date().isoformat()
    assert body["period_start"] < body["period_end"]


def test_rollup_copies_redis_counters_into_postgres_idempotently(alice_client, acme):
    for _ in range(3):
        alice_client.get("/api/v1/usage")
    assert usage_rollup() == 1
    assert usage_rollup() == 1  # running twice changes nothing

    row = UsageDaily.objects.get(organization=acme)
    assert (row.date, row.api_requests) == (timezone.now().date(), 3)


def test_another_organization_sees_only_its_own_usage_and_billing(
    alice_client, mallory_client, acme, alice
):
    from billing.models import Plan
    from billing.services.overrides import plan_override_grant

    plan_override_grant(
        organization=acme, plan=Plan.objects.get(code="pro"), reason="deal", granted_by=alice
    )
    for _ in range(5):
        alice_client.get("/api/v1/usage")

    theirs = mallory_client.get("/api/v1/usage").json()
    assert theirs["plan"]["code"] == "free"
    assert theirs["usage"]["api_requests_today"] == 1
    page = mallory_client.get("/billing/").content.decode()
    assert "Acme" not in page
    assert "deal" not in page and 'data-plan="free"' in page
    assert "Acme" not in mallory_client.get("/billing/usage/").content.decode()


def test_key_creation_past_the_allowance_names_the_plan_that_allows_more(alice_client):
    first = alice_client.post("/api/v1/keys", {"name": "one"}, format="json")
    second = alice_client.post("/api/v1/keys", {"name": "two"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 403
    assert second.json()["error"]["code"] == "plan_required"
    assert second.json()["error"]["details"]["plans"] == ["pro", "enterprise"]


def test_pages_without_stripe_say_so_and_nothing_crashes(no_stripe, alice_client, client, db):
    pricing = client.get("/pricing/")
    assert pricing.status_code == 200
    assert b"Enterprise" in pricing.content and b"$499" in pricing.content
    for path in [
        "/pricing/",
        "/billing/",
        "/billing/success/",
        "/billing/cancel/",
        "/billing/usage/",
    ]:
        response = alice_client.get(path)
        assert response.status_code == 200, path
    assert b"not configured" in alice_client.get("/billing/").content
    refused = alice_client.post("/billing/checkout/", {"plan": "pro"}, follow=True)
    assert b"not configured" in refused.content
    webhook = client.post("/billing/stripe/webhook/", data=b"{}", content_type="application/json")
    assert webhook.status_code == 503


def test_operators_grant_plans_in_the_admin_without_stripe(
    no_stripe, admin_client, admin_user, acme
):
    from billing.entitlements import entitlements_for
    from billing.models import Plan, PlanOverride

    response = admin_client.post(
        "/admin/billing/planoverride/add/",
        {
            "organization": acme.pk,
            "plan": Plan.objects.get(code="enterprise").pk,
            "until_0": "",
            "until_1": "",
            "reason": "Conference sponsor",
        },
    )

    assert response.status_code == 302, response.content
    assert PlanOverride.objects.get().granted_by == admin_user
    assert entitlements_for(organization=acme).plan == "enterprise"
    for path in ["plan", "subscription", "webhookevent", "planoverride", "usagedaily"]:
        assert admin_client.get(f"/admin/billing/{path}/").status_code == 200, path


def test_members_see_billing_but_not_the_upgrade_buttons(carol, acme, stripe_fake):
    page = client_for(carol, acme).get("/billing/").content.decode()
    assert "Only owners and admins" in page
    assert "billing/checkout/" not in page
