"""Starting Stripe Checkout (to subscribe) and the Billing Portal (to manage)."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from accounts.models import Organization, User
from billing.models import Plan
from billing.services.customers import stripe_customer_ensure
from billing.stripe_client import stripe_client


class CheckoutUnavailable(Exception):
    """The plan cannot be bought online; the message is safe to show."""


def _absolute(path: str) -> str:
    site_url: str = settings.SITE_URL
    return site_url + path


def checkout_session_create(*, organization: Organization, plan: Plan, user: User) -> str:
    """A Checkout session in subscription mode for `plan`; returns the URL to send the user to.

    Nothing changes locally here: the subscription exists for us only once Stripe
    reports it (webhook or reconcile), so an abandoned checkout grants nothing.
    """
    if plan.is_free:
        raise CheckoutUnavailable("The free plan needs no checkout.")
    if not plan.price_id:
        raise CheckoutUnavailable(f"The {plan.name} plan has no Stripe price configured yet.")
    customer = stripe_customer_ensure(organization=organization, user=user)
    metadata = {"organization_id": str(organization.pk), "plan": plan.code}
    session = stripe_client().v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.stripe_customer_id,
            "client_reference_id": str(organization.pk),
            "line_items": [{"price": plan.price_id, "quantity": 1}],
            "success_url": _absolute(reverse("billing_success"))
            + "?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": _absolute(reverse("billing_cancel")),
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
        }
    )
    if session.url is None:  # only embedded Checkout has no page of its own
        raise CheckoutUnavailable("Stripe did not return a checkout page; please try again.")
    return session.url


def portal_session_create(*, organization: Organization, user: User) -> str:
    """A Billing Portal session (payment method, invoices, plan change, cancellation)."""
    customer = stripe_customer_ensure(organization=organization, user=user)
    session = stripe_client().v1.billing_portal.sessions.create(
        params={
            "customer": customer.stripe_customer_id,
            "return_url": _absolute(reverse("billing")),
        }
    )
    return session.url
