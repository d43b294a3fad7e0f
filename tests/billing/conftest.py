"""Billing fixtures: a fake Stripe on 127.0.0.1 and webhooks signed like Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.fakes.stripe_server import SECRET_KEY, FakeStripe, new_id

WEBHOOK_SECRET = "whsec_test_secret_for_billing"
PRICE_PRO = "price_pro_test"
PRICE_ENTERPRISE = "price_enterprise_test"


@pytest.fixture
def stripe_fake(settings):
    fake = FakeStripe().start()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = fake.base
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.BILLING_STRIPE_PRICES = {"pro": PRICE_PRO, "enterprise": PRICE_ENTERPRISE}
    settings.SITE_URL = "http://testserver"
    yield fake
    fake.stop()


@pytest.fixture
def no_stripe(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }


def sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(client, event: dict, *, secret: str = WEBHOOK_SECRET, signature: str | None = None):
    """POST an event to our webhook endpoint the way Stripe does."""
    body = json.dumps(event).encode()
    return client.post(
        "/billing/stripe/webhook/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature if signature is not None else sign(body, secret),
    )
