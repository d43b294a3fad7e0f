"""The base of every tenant-scoped API view.

It resolves the calling organization and the caller's role once, right after
authentication, and hands `self.organization` to the subclass. Subclasses read
tenant data only through selectors that take that organization, so no view can
forget the scoping.

It lives in accounts, under every app that serves an API (docs/architecture.md);
the plan's rate limit it applies is billing's, asked through accounts.allowances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.allowances import RateLimitVerdict, plan_allowances
from accounts.api.authentication import ApiKeyPrincipal
from accounts.models import MANAGER_ROLES, ApiKey, ApiKeyScope, Organization, Role, User
from accounts.selectors import organization_for_user

# An API key acts for its organization with the admin role, narrowed by its scopes
# (OrganizationAPIView.api_key_scope): it was created by an owner or admin, and
# programs need to rotate keys. Decision in docs/decisions.md.
API_KEY_ROLE = Role.ADMIN


class ScopeRequired(exceptions.PermissionDenied):
    """403 `permission_denied` for a key without the scope an endpoint needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"This API key lacks the `{scope}` scope this needs.")
        self.details = {"required_scope": scope}


@dataclass(frozen=True)
class Caller:
    organization: Organization
    role: str
    api_key: ApiKey | None = None
    user: User | None = None  # the signed-in person; None for an API key

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


def caller_resolve(request: Request) -> Caller | None:
    # ApiKeyAuthentication puts an ApiKeyPrincipal where drf-stubs expect a user.
    principal: object = request.user
    if isinstance(principal, ApiKeyPrincipal):
        return Caller(
            organization=principal.organization, role=API_KEY_ROLE, api_key=principal.api_key
        )
    user = request.user
    if not isinstance(user, User):
        return None  # anonymous
    from accounts.middleware import SESSION_KEY

    membership = organization_for_user(user=user, organization_id=request.session.get(SESSION_KEY))
    if membership is None:
        return None
    return Caller(organization=membership.organization, role=membership.role, user=user)


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
        caller: Caller | None = getattr(view, "caller", None)  # HasOrganization ran first
        return caller is not None and caller.can_manage


class ScopedAutoSchema(AutoSchema):
    """Documents the API key scope each operation needs (`x-api-key-scope` and a line
    in its description), read from the view, so the schema cannot drift from it."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or not isinstance(self.view, OrganizationAPIView):
            return operation
        view = self.view
        write = self.method not in permissions.SAFE_METHODS and view.api_key_write_scope
        scope = view.api_key_write_scope if write else view.api_key_scope
        operation["x-api-key-scope"] = scope
        note = f"API keys need the `{scope}` scope (otherwise 403 `permission_denied`)."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
        return operation


class OrganizationAPIView(APIView):
    permission_classes = [HasOrganization]
    schema = ScopedAutoSchema()
    caller: Caller | None = None
    rate_limit: RateLimitVerdict | None = None
    # The scope an API key needs here, and for unsafe methods if different. Read is the
    # default, so an endpoint that forgets to say needs the least powerful scope.
    api_key_scope: str = ApiKeyScope.READ
    api_key_write_scope: str | None = None

    def required_scope(self, request: Request) -> str:
        if request.method not in permissions.SAFE_METHODS and self.api_key_write_scope:
            return self.api_key_write_scope
        return self.api_key_scope

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        # Scopes narrow what a key may do; people are governed by their role alone.
        api_key = self.caller.api_key if self.caller is not None else None
        if api_key is not None and request.method != "OPTIONS":
            scope = self.required_scope(request)
            if not api_key.has_scope(scope):
                raise ScopeRequired(scope)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        self.caller = caller_resolve(request)
        if self.caller is None:
            return  # counted per client address (accounts.middleware), refused by permissions
        # Proven: the per-address window of unauthenticated calls gives its slot back.
        request._request.api_caller_verified = True  # type: ignore[attr-defined]  # read by accounts.middleware
        # Counted once the organization is known and before permissions, so anonymous
        # calls cannot spend an organization's allowance while its own refused calls
        # (403) do: a key hammering what it may not do is limited like any other.
        # Atomic in Redis (billing.ratelimit).
        self.rate_limit = plan_allowances().api_request_count(organization=self.caller.organization)
        if not self.rate_limit.allowed:
            raise exceptions.Throttled(wait=self.rate_limit.reset_seconds)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Every answer carries RateLimit-*: the organization's window once it is known,
        # else (401, and 403 without an organization) the client address's window.
        limit = self.rate_limit or getattr(request._request, "unauthenticated_rate_limit", None)
        if limit is not None:
            for header, value in limit.headers().items():
                response[header] = value
        return response

    @property
    def verified_caller(self) -> Caller:
        """The caller, for handlers: HasOrganization has refused a request without one."""
        assert self.caller is not None, "permission checks run before the handler"
        return self.caller

    @property
    def organization(self) -> Organization:
        return self.verified_caller.organization
