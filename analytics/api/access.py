"""The analytics plan gate: billing's entitlements decide, in one place."""

from __future__ import annotations

from accounts.models import Organization
from billing.entitlements import entitlements_for, plans_allowing
from quantsaas.api.errors import PlanRequired


def analytics_guard(*, organization: Organization) -> None:
    """403 plan_required, naming the plans that include analytics, when this one does not."""
    if not entitlements_for(organization=organization).analytics:
        raise PlanRequired(
            "Your plan does not include analytics.",
            plans=plans_allowing(predicate=lambda plan: plan.analytics),
        )
