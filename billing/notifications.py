"""Emails about billing, sent to an organization's owners."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import Membership, Organization, Role


def organization_owner_emails(*, organization: Organization) -> list[str]:
    return list(
        Membership.objects.filter(organization=organization, role=Role.OWNER)
        .values_list("user__email", flat=True)
        .order_by("user__email")
    )


def payment_failed_notify(*, organization_id: int, invoice: dict[str, Any]) -> int:
    """Tell the owners a renewal payment failed and how long access lasts; returns emails sent."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return 0
    recipients = organization_owner_emails(organization=organization)
    if not recipients:
        return 0
    context = {
        "organization": organization,
        "amount": f"{invoice['amount_due'] / 100:,.2f} {invoice['currency'].upper()}",
        "invoice_url": invoice["hosted_invoice_url"],
        "billing_url": settings.SITE_URL + reverse("billing"),
        "grace_days": settings.BILLING_PAST_DUE_GRACE_DAYS,
    }
    subject = render_to_string("billing/email/payment_failed_subject.txt", context).strip()
    body = render_to_string("billing/email/payment_failed.txt", context)
    return send_mail(subject, body, None, recipients)
