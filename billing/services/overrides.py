"""Operator grants of a plan, outside Stripe (trials, partners, support gestures)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.models import Organization, User
from billing.models import Plan, PlanOverride


@transaction.atomic
def plan_override_grant(
    *,
    organization: Organization,
    plan: Plan,
    reason: str,
    granted_by: User | None,
    until: datetime | None = None,
) -> PlanOverride:
    """Grant `plan` until `until`; it beats any subscription while it lasts."""
    if not reason.strip():
        raise ValueError("An override needs a reason.")
    return PlanOverride.objects.create(
        organization=organization, plan=plan, reason=reason, granted_by=granted_by, until=until
    )
