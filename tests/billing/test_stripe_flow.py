"""Checkout, webhooks and reconciliation against a fake Stripe, through the real library."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing.entitlements import entitlements_for
from billing.models import Subscription, WebhookEvent
from quantsaas.celery import app as celery_app
from tests.billing.conftest import PRICE_PRO, deliver, sign, stripe_event
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _checkout(client, plan: str = "pro") -> str:
    response = client.post("/billing/checkout/", {"plan": plan})
    assert response.status_code == 302, response.content
    return response["Location"]


def _subscribe(client, fake, *, plan: str = "pro") -> tuple[dict, dict]:
    """Alice pays in Checkout and Stripe tells us so; returns (session, subscription)."""
    session_id = _checkout(client, plan).rsplit("/", 1)[-1]
    session = fake.checkout_complete(session_id)
    response = deliver(client, stripe_event("checkout.session.completed", session))
    assert response.status_code == 200, response.content
    return session, fake.subscription(session["subscription"])


def test_checkout_creates_a_subscription_and_upgrades_limits(stripe_fake, alice_client, acme):
    assert entitlements_for(organization=acme).plan == "free"
    before = alice_client.get("/api/v1/usage")
    assert before["RateLimit-Limit"] == "60"

    location = _checkout(alice_client)
    assert location.startswith(stripe_fake.base + "/pay/cs_test_")
    [create] = stripe_fake.calls("POST", "/v1/checkout/sessions")
    assert create["params"]["mode"] == "subscription"
    assert create["params"]["line_items"] == [{"price": PRICE_PRO, "quantity": "1"}]
    assert create["headers"]["Stripe-Version"] == "2026-10-28.endive"
    # Leaving for Checkout grants nothing: the success page tells the truth.
    page = alice_client.get("/billing/success/?session_id=x")
    assert b"Confirming your payment" in page.content
    assert entitlements_for(organization=acme).plan == "free"

    session = stripe_fake.checkout_complete(location.rsplit("/", 1)[-1])
    response = deliver(alice_client, stripe_event("checkout.session.completed", session))

    assert response.status_code == 200
    assert entitlements_for(organization=acme).plan == "pro"
    after = alice_client.get("/api/v1/usage")
    assert after["RateLimit-Limit"] == "1200"
    assert after.json()["plan"] == {"code": "pro", "name": "Pro", "status": "active"}
    page = alice_client.get("/billing/success/?session_id=x")
    assert b"on Pro" in page.content
    billing = alice_client.get("/billing/")
    assert b"Renews" in billing.content


def test_checkout_reuses_one_stripe_customer_per_organization(stripe_fake, alice_client, bob):
    _checkout(alice_client)
    _checkout(client_for(bob))
    assert len(stripe_fake.customers) == 1


def test_members_cannot_start_checkout_or_open_the_portal(stripe_fake, carol, acme):
    client = client_for(carol, acme)
    assert client.post("/billing/checkout/", {"plan": "pro"}).status_code == 403
    assert client.post("/billing/portal/").status_code == 403
    assert stripe_fake.calls("POST", "/v1/") == []


def test_portal_opens_for_a_subscribed_organization(stripe_fake, alice_client, acme):
    _subscribe(alice_client, stripe_fake)
    response = alice_client.post("/billing/portal/")
    assert response.status_code == 302
    assert response["Location"].startswith(stripe_fake.base + "/portal/cus_")
    # Upgrading while subscribed goes to the portal, never to a second subscription.
    again = alice_client.post("/billing/checkout/", {"plan": "enterprise"})
    assert "/portal/" in again["Location"]


def test_bad_signature_is_400_and_changes_nothing(stripe_fake, alice_client, acme):
    session_id = _checkout(alice_client).rsplit("/", 1)[-1]
    session = stripe_fake.checkout_complete(session_id)
    event = stripe_event("checkout.session.completed", session)

    forged = deliver(alice_client, event, secret="whsec_attacker_chosen")
    stale = deliver(alice_client, event, signature=sign(b"{}", timestamp=int(time.time()) - 3600))

    assert forged.status_code == 400
    assert stale.status_code == 400
    assert not Subscription.objects.exists()
    assert entitlements_for(organization=acme).plan == "free"
    rows = WebhookEvent.objects.all()
    assert {row.outcome for row in rows} == {"invalid_signature"}
    assert {row.stripe_event_id for row in rows} == {""}  # forged ids cannot squat the real one
    # The genuine delivery of the same event is still applied.
    assert deliver(alice_client, event).status_code == 200
    assert entitlements_for(organization=acme).plan == "pro"


def test_the_same_event_delivered_twice_is_applied_once(
    stripe_fake, alice_client, acme, bob, django_capture_on_commit_callbacks
):
    _, subscription = _subscribe(alice_client, stripe_fake)
    stripe_fake.subscription_update(subscription["id"], status="past_due")
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": subscription["customer"],
        "amount_due": 4900,
        "currency": "usd",
        "parent": {"subscription_details": {"subscription": subscription["id"]}},
    }
    event = stripe_event("invoice.payment_failed", invoice)

    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(alice_client, event)
    with django_capture_on_commit_callbacks(execute=True):
        second = deliver(alice_client, event)

    assert first.status_code == second.status_code == 200
    assert second.json()["message"].startswith("Duplicate")
    assert len(mail.outbox) == 1  # the owners are told once
    assert mail.outbox[0].to == ["alice@acme.test"]  # owners only, not bob the admin
    assert "49.00 USD" in mail.outbox[0].body
    outcomes = WebhookEvent.objects.filter(type="invoice.payment_failed").values_list(
        "outcome", flat=True
    )
    assert sorted(outcomes) == ["duplicate", "processed"]


def test_events_in_the_wrong_order_end_in_the_right_state(stripe_fake, alice_client, acme):
    session_id = _checkout(alice_client).rsplit("/", 1)[-1]
    session = stripe_fake.checkout_complete(session_id)
    created = stripe_fake.subscription(session["subscription"])
    stripe_fake.subscription_update(created["id"], status="canceled", canceled_at=int(time.time()))
    deleted = stripe_fake.subscription(created["id"])

    # Stripe's "deleted" arrives first, then the late "created" and "checkout completed".
    for event in [
        stripe_event("customer.subscription.deleted", deleted),
        stripe_event("customer.subscription.created", created),
        stripe_event("checkout.session.completed", session),
    ]:
        assert deliver(alice_client, event).status_code == 200

    subscription = Subscription.objects.get(stripe_subscription_id=created["id"])
    assert subscription.status == "canceled"
    assert entitlements_for(organization=acme).plan == "free"


def test_payment_failure_then_grace_then_downgrade(stripe_fake, alice_client, acme, settings):
    settings.BILLING_PAST_DUE_GRACE_DAYS = 7
    _, subscription = _subscribe(alice_client, stripe_fake)
    past_due = stripe_fake.subscription_update(subscription["id"], status="past_due")
    deliver(alice_client, stripe_event("customer.subscription.updated", past_due))

    assert entitlements_for(organization=acme).plan == "pro"  # within the grace period
    page = alice_client.get("/billing/")
    assert b"Your last payment failed" in page.content

    # Eight days later Stripe is still retrying: the grace is over.
    Subscription.objects.filter(stripe_subscription_id=subscription["id"]).update(
        past_due_since=timezone.now() - timedelta(days=8)
    )
    Subscription.objects.get(stripe_subscription_id=subscription["id"]).save()  # as a sync would
    assert entitlements_for(organization=acme).plan == "free"

    # A later sync of the same past_due state must not restart the grace period.
    deliver(alice_client, stripe_event("customer.subscription.updated", past_due))
    assert entitlements_for(organization=acme).plan == "free"

    # Stripe gives up and marks it unpaid: still free; the card is fixed: paid again.
    stripe_fake.subscription_update(subscription["id"], status="unpaid")
    deliver(
        alice_client,
        stripe_event(
            "invoice.payment_failed",
            {"customer": subscription["customer"], "subscription": subscription["id"]},
        ),
    )
    assert entitlements_for(organization=acme).plan == "free"
    stripe_fake.subscription_update(subscription["id"], status="active")
    deliver(
        alice_client,
        stripe_event(
            "invoice.paid",
            {"customer": subscription["customer"], "subscription": subscription["id"]},
        ),
    )
    assert entitlements_for(organization=acme).plan == "pro"


def test_cancellation_downgrades_at_period_end(stripe_fake, alice_client, acme):
    _, subscription = _subscribe(alice_client, stripe_fake)
    canceling = stripe_fake.subscription_update(subscription["id"], cancel_at_period_end=True)
    deliver(alice_client, stripe_event("customer.subscription.updated", canceling))

    assert entitlements_for(organization=acme).plan == "pro"  # paid until the period ends
    assert b"you move to the free plan then" in alice_client.get("/billing/").content

    ended = stripe_fake.subscription_update(
        subscription["id"], status="canceled", canceled_at=int(time.time())
    )
    deliver(alice_client, stripe_event("customer.subscription.deleted", ended))
    assert entitlements_for(organization=acme).plan == "free"
    assert alice_client.get("/api/v1/usage")["RateLimit-Limit"] == "60"


def test_unhandled_event_types_are_acknowledged(stripe_fake, client, db):
    response = deliver(client, stripe_event("customer.tax_id.created", {"id": "txi_1"}))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().outcome == "ignored"


def test_reconcile_task_heals_a_missed_webhook(stripe_fake, alice_client, acme):
    from billing.tasks import subscriptions_reconcile

    session_id = _checkout(alice_client).rsplit("/", 1)[-1]
    stripe_fake.checkout_complete(session_id)  # ... and the webhook never arrives
    assert entitlements_for(organization=acme).plan == "free"

    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # run the fan-out here instead of on a worker
    try:
        subscriptions_reconcile.delay()
    finally:
        celery_app.conf.task_always_eager = eager

    assert entitlements_for(organization=acme).plan == "pro"


def test_admin_reprocess_re_reads_stripe(stripe_fake, alice_client, acme, admin_client):
    _, subscription = _subscribe(alice_client, stripe_fake)
    event = WebhookEvent.objects.get(type="checkout.session.completed")
    stripe_fake.subscription_update(subscription["id"], status="canceled")

    response = admin_client.post(
        "/admin/billing/webhookevent/",
        {"action": "reprocess", "_selected_action": [event.pk]},
    )

    assert response.status_code == 302
    assert entitlements_for(organization=acme).plan == "free"
    event.refresh_from_db()
    assert event.attempts == 2
