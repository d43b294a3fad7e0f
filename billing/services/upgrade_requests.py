"""Upgrade requests: how a customer asks for a plan when online payment is off.

Stored for operators (admin), recorded in the organization's audit log, and
confirmed to the requester by email so they know someone will answer.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import AuditLog, Organization, User
from accounts.services.audit import audit_log_record
from billing.models import Plan, UpgradeRequest


@transaction.atomic
def upgrade_request_create(
    *,
    organization: Organization,
    plan: Plan,
    requested_by: User,
    message: str = "",
    ip_address: str | None = None,
) -> UpgradeRequest:
    request = UpgradeRequest.objects.create(
        organization=organization,
        plan=plan,
        requested_by=requested_by,
        contact_email=requested_by.email,
        message=message.strip(),
    )
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.UPGRADE_REQUESTED,
        actor=requested_by,
        target=plan.code,
        details={"upgrade_request": request.pk},
        ip_address=ip_address,
    )
    transaction.on_commit(lambda: upgrade_request_confirm(upgrade_request=request))
    return request


def upgrade_request_confirm(*, upgrade_request: UpgradeRequest) -> int:
    """The requester's receipt: what was asked, and that an operator will answer."""
    context = {
        "upgrade_request": upgrade_request,
        "billing_url": settings.SITE_URL + reverse("billing"),
    }
    subject = render_to_string("billing/email/upgrade_request_subject.txt", context).strip()
    body = render_to_string("billing/email/upgrade_request.txt", context)
    return send_mail(subject, body, None, [upgrade_request.contact_email])
