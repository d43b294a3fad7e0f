"""The base of every tenant-scoped API view.

It resolves the calling organization and the caller's role once, right after
authentication, and hands `self.organization` to the subclass. Subclasses read
tenant data only through selectors that take that organization, so no view can
forget the scoping.
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.authentication import ApiKeyPrincipal
from accounts.models import MANAGER_ROLES, ApiKey, Organization, Role
from accounts.selectors import organization_for_user
from billing.ratelimit import RateLimitResult, rate_limit_hit

# An API key acts for its organization with the admin role: it was created by an
# owner or admin, and programs need to rotate keys. Decision in docs/decisions.md.
API_KEY_ROLE = Role.ADMIN


@dataclass(frozen=True)
class Caller:
    organization: Organization
    role: str
    api_key: ApiKey | None = None

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


def caller_resolve(request: Request) -> Caller | None:
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return Caller(organization=user.organization, role=API_KEY_ROLE, api_key=user.api_key)
    if user is None or not user.is_authenticated:
        return None
    from accounts.middleware import SESSION_KEY

    membership = organization_for_user(user=user, organization_id=request.session.get(SESSION_KEY))
    if membership is None:
        return None
    return Caller(organization=membership.organization, role=membership.role)


class HasOrganization(permissions.BasePermission):
    message = "You are not a member of any organization."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        return getattr(view, "caller", None) is not None


class CanManageForWrites(permissions.BasePermission):
    """Reads for every member; writes only for owners and admins (and API keys)."""

    message = "Only owners and admins of the organization can do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return view.caller.can_manage


class OrganizationAPIView(APIView):
    permission_classes = [HasOrganization]
    caller: Caller | None = None
    rate_limit: RateLimitResult | None = None

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        self.caller = caller_resolve(request)

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # Counted after authentication and permissions, so anonymous or refused calls
        # cannot spend an organization's allowance; atomic in Redis (billing.ratelimit).
        self.rate_limit = rate_limit_hit(organization=self.organization)
        if not self.rate_limit.allowed:
            raise exceptions.Throttled(wait=self.rate_limit.reset_seconds)

    def finalize_response(self, request: Request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.rate_limit is not None:  # every answer once the organization is known
            for header, value in self.rate_limit.headers().items():
                response[header] = value
        return response

    @property
    def organization(self) -> Organization:
        assert self.caller is not None, "permission checks run before the handler"
        return self.caller.organization
