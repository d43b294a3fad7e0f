"""The Stripe customer behind an organization."""

from __future__ import annotations

from django.db import transaction

from accounts.models import Organization, User
from billing.models import StripeCustomer
from billing.stripe_client import stripe_client


def stripe_customer_ensure(
    *, organization: Organization, user: User | None = None
) -> StripeCustomer:
    """The organization's Stripe customer, created in Stripe on first need.

    The idempotency key makes a double click (or two managers at once) create one
    Stripe customer, and the row lock makes them agree on it locally.
    """
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        existing = StripeCustomer.objects.filter(organization=organization).first()
        if existing is not None:
            return existing
        customer = stripe_client().v1.customers.create(
            params={
                "name": organization.name,
                "email": user.email if user is not None else "",
                "metadata": {"organization_id": str(organization.pk), "slug": organization.slug},
            },
            options={"idempotency_key": f"organization-{organization.pk}-customer"},
        )
        return StripeCustomer.objects.create(
            organization=organization, stripe_customer_id=customer.id
        )
