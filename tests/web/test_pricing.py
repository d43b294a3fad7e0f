"""The pricing page compares plans in human units, and without Stripe a customer asks
for a plan with a form that operators see and that is confirmed by email."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AuditLog
from billing.models import Plan, PlanOverride, UpgradeRequest
from billing.pricing import conflate_words, duration_words, history_words

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_stripe(settings):
    settings.STRIPE_SECRET_KEY = ""


def test_limits_read_in_human_units():
    assert duration_words(900) == "15 minutes"
    assert duration_words(60) == "1 minute"
    assert duration_words(7200) == "2 hours"
    assert duration_words(45) == "45 seconds"
    assert history_words(7) == "7 days"
    assert history_words(365) == "1 year"
    assert history_words(None) == "Unlimited"
    assert conflate_words(0) == "Every update"
    assert conflate_words(1000) == "1 a second per channel"
    assert conflate_words(250) == "1 every 250 ms per channel"


def test_pricing_compares_plans_side_by_side_with_the_current_one_highlighted(alice_client):
    body = alice_client.get(reverse("pricing")).content.decode()

    assert 'id="plan-comparison"' in body
    assert "Delayed 15 minutes" in body
    assert "7 days" in body
    assert "60 requests a minute" in body
    assert "900" not in body and "seconds" not in body
    assert "Order book depth" in body and "20 levels" in body and "50 levels" in body
    assert "1 a second per channel" in body and "Every update" in body
    current = re.search(r'<th scope="col" id="plan-free" class="([^"]+)"', body)
    assert current and "plan-current" in current.group(1)
    assert "Your current plan" in body


def test_without_stripe_the_buy_buttons_become_requests_not_jargon(alice_client):
    body = alice_client.get(reverse("pricing")).content.decode()

    assert reverse("billing_checkout") not in body
    assert f"{reverse('upgrade_request')}?plan=pro" in body
    assert "operator" not in body.lower() and "admin" not in body.lower()


def test_a_member_sees_who_can_change_the_plan_instead_of_a_button(acme, carol):
    from tests.conftest import client_for

    body = client_for(carol, acme).get(reverse("pricing")).content.decode()

    assert reverse("upgrade_request") not in body
    assert "An owner or admin of your organization can change the plan." in body


def test_an_upgrade_request_is_stored_audited_and_confirmed_by_email(
    alice_client, acme, django_capture_on_commit_callbacks
):
    page = alice_client.get(reverse("upgrade_request") + "?plan=pro")
    assert page.status_code == 200
    assert 'value="pro" selected' in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("upgrade_request"),
            {"plan": "pro", "message": "PO 4711 for the research desk"},
        )

    assert response.status_code == 302 and response["Location"] == reverse("billing")
    request = UpgradeRequest.objects.get(organization=acme)
    assert request.plan.code == "pro" and request.status == "open"
    assert request.contact_email == "alice@acme.test"
    assert AuditLog.objects.filter(organization=acme, action="billing.upgrade_requested").exists()
    [email] = mail.outbox
    assert email.to == ["alice@acme.test"]
    assert "Pro" in email.subject
    assert "PO 4711" in email.body
    confirmation = alice_client.get(reverse("billing")).content.decode()
    assert "your request is with our team" in confirmation


def test_an_upgrade_request_refuses_an_unknown_plan(alice_client):
    response = alice_client.post(reverse("upgrade_request"), {"plan": "platinum"})

    assert response.status_code == 400
    assert not UpgradeRequest.objects.exists()


def test_operator_notes_on_a_grant_never_reach_the_customer(alice_client, acme):
    secret = "goodwill after the outage, do not mention to the client"
    PlanOverride.objects.create(organization=acme, plan=Plan.objects.get(code="pro"), reason=secret)

    for name in ["billing", "pricing", "dashboard"]:
        body = alice_client.get(reverse(name)).content.decode()
        assert secret not in body, name
