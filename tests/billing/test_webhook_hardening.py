"""The Stripe webhook verifies before storing, limits refused deliveries per address,
and old deliveries are pruned by a periodic task."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings as django_settings
from django.utils import timezone

from billing.models import WebhookEvent
from billing.tasks import webhook_events_prune_task
from tests.billing.conftest import deliver, stripe_event

URL = "/billing/stripe/webhook/"
JUNK = "SPAM-PAYLOAD-" * 50


def _forged(client, **extra):
    return client.post(
        URL,
        data=json.dumps({"id": "evt_forged", "type": "invoice.paid", "junk": JUNK}),
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=00",
        **extra,
    )


def test_a_refused_delivery_leaves_metadata_but_not_its_body(stripe_fake, client, db):
    assert _forged(client, REMOTE_ADDR="203.0.113.5").status_code == 400

    row = WebhookEvent.objects.get()
    assert row.outcome == "invalid_signature"
    assert row.raw_body == ""
    assert row.payload is None
    assert row.stripe_event_id == ""
    assert "203.0.113.5" in row.error
    assert "bytes" in row.error
    assert "SPAM" not in row.error


def test_refused_deliveries_are_rate_limited_per_address(stripe_fake, client, db, settings):
    settings.BILLING_WEBHOOK_REFUSED_PER_MINUTE = 3
    answers = [_forged(client).status_code for _ in range(5)]

    assert answers == [400, 400, 400, 429, 429]
    assert WebhookEvent.objects.count() == 3  # the refused floods stored nothing
    assert _forged(client, REMOTE_ADDR="198.51.100.1").status_code == 400


def test_genuine_deliveries_are_never_limited(stripe_fake, client, db, settings):
    settings.BILLING_WEBHOOK_REFUSED_PER_MINUTE = 2
    for n in range(5):
        event = stripe_event("customer.tax_id.created", {"id": f"txi_{n}"})
        assert deliver(client, event).status_code == 200
    assert _forged(client).status_code == 400  # the address's allowance is untouched


def test_old_deliveries_are_pruned_by_a_periodic_task(stripe_fake, client, db):
    deliver(client, stripe_event("customer.tax_id.created", {"id": "txi_old"}))
    deliver(client, stripe_event("customer.tax_id.created", {"id": "txi_new"}))
    _forged(client)
    _forged(client)
    old_verified, new_verified = WebhookEvent.objects.exclude(stripe_event_id="").order_by("pk")
    old_refused, new_refused = WebhookEvent.objects.filter(stripe_event_id="").order_by("pk")
    now = timezone.now()
    WebhookEvent.objects.filter(pk=old_verified.pk).update(received_at=now - timedelta(days=91))
    WebhookEvent.objects.filter(pk=new_verified.pk).update(received_at=now - timedelta(days=30))
    WebhookEvent.objects.filter(pk=old_refused.pk).update(received_at=now - timedelta(days=8))

    assert webhook_events_prune_task() == 2

    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {
        new_verified.pk,
        new_refused.pk,
    }
    schedule = django_settings.CELERY_BEAT_SCHEDULE.values()
    assert "billing.tasks.webhook_events_prune_task" in {entry["task"] for entry in schedule}
