"""The configured Stripe client, or None when this deployment has no Stripe keys.

Every call goes through the real `stripe` library with the API version pinned
in settings, so a Stripe-side default change cannot alter the objects we parse.
Tests point STRIPE_API_BASE at a local fake server.
"""

from __future__ import annotations

import stripe
from django.conf import settings
from stripe._base_address import BaseAddresses  # the TypedDict StripeClient takes


class StripeNotConfigured(Exception):
    """Raised when a Stripe call is needed but STRIPE_SECRET_KEY is empty."""


def stripe_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def stripe_client() -> stripe.StripeClient:
    if not stripe_configured():
        raise StripeNotConfigured("Stripe is not configured on this server.")
    base_addresses: BaseAddresses | None = (
        {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    )
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        stripe_version=settings.STRIPE_API_VERSION,
        base_addresses=base_addresses,
        # Tests talk to a local fake and must fail fast; production keeps Stripe's own
        # safe retries (requests carry idempotency keys).
        max_network_retries=0 if settings.TESTING else 2,
    )
