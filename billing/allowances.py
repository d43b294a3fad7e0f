"""billing's answer to accounts' PlanAllowances (accounts/allowances.py), from entitlements."""

from __future__ import annotations

from accounts.models import Organization
from billing.entitlements import STATUS_NONE, entitlements_for, plans_allowing
from billing.ratelimit import RateLimitResult, rate_limit_hit


class EntitlementAllowances:
    def api_request_count(self, *, organization: Organization) -> RateLimitResult:
        return rate_limit_hit(organization=organization)

    def api_keys_allowed(self, *, organization: Organization) -> int:
        return entitlements_for(organization=organization).api_keys

    def plans_allowing_api_keys(self, *, more_than: int) -> list[str]:
        return plans_allowing(predicate=lambda plan: plan.api_keys > more_than)

    def is_free(self, *, organization: Organization) -> bool:
        return entitlements_for(organization=organization).status == STATUS_NONE
