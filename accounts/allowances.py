"""What a plan allows an organization, as accounts needs to know it.

Key creation, organization creation and the API's per-organization rate limit
(accounts.api.base) are applied by accounts, but the numbers come from
the organization's plan, which billing owns and which sits above accounts
(docs/architecture.md). So accounts asks through this protocol and billing registers
the implementation when its app is ready (billing/allowances.py); accounts never
imports billing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from accounts.models import Organization


class RateLimitVerdict(Protocol):
    """One counted API request: allowed or not, and the RateLimit-* headers to answer."""

    @property
    def allowed(self) -> bool: ...

    @property
    def reset_seconds(self) -> int: ...

    def headers(self) -> dict[str, str]: ...


class PlanAllowances(Protocol):
    def api_request_count(self, *, organization: Organization) -> RateLimitVerdict:
        """Count one API request against the plan's requests per minute (accounts.api.base)."""
        ...

    def api_keys_allowed(self, *, organization: Organization) -> int:
        """How many active API keys the organization's plan allows."""
        ...

    def plans_allowing_api_keys(self, *, more_than: int) -> list[str]:
        """Codes of the offered plans that allow more than `more_than` keys, cheapest first."""
        ...

    def is_free(self, *, organization: Organization) -> bool:
        """True without a subscription or an operator's grant (the free plan)."""
        ...


_registered: list[PlanAllowances] = []


def plan_allowances_register(allowances: PlanAllowances) -> None:
    """Called once by billing's AppConfig.ready()."""
    _registered[:] = [allowances]


def plan_allowances() -> PlanAllowances:
    if not _registered:
        raise RuntimeError("No plan allowances registered: is billing in INSTALLED_APPS?")
    return _registered[0]
