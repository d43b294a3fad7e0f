"""Resolve the signed-in user's current organization once per request.

The choice lives in the session (users switch it from the header); it is
validated against the user's memberships on every request, so a stale or
forged session value can never reach another tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from accounts.api.authentication import raw_key_from_headers
from accounts.api_key_cache import api_key_cached
from accounts.api_keys import key_hash, key_looks_valid
from accounts.decorators import TenantRequest
from accounts.limits import LimitResult, limit_hit, limit_refund
from accounts.models import Membership
from accounts.selectors import organization_for_user
from accounts.services.api_keys import ApiKeyStatus, api_key_status
from accounts.services.audit import client_ip
from quantsaas.api.errors import error_body

SESSION_KEY = "organization_id"


def current_membership(request: HttpRequest) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    membership = organization_for_user(user=user, organization_id=request.session.get(SESSION_KEY))
    if membership is not None and request.session.get(SESSION_KEY) != membership.organization_id:
        request.session[SESSION_KEY] = membership.organization_id
    return membership


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: TenantRequest) -> HttpResponse:
        # Resolved eagerly (one indexed query for signed-in users) so that views can
        # test `request.organization is None` without lazy-object surprises.
        request.membership = current_membership(request)
        request.organization = request.membership.organization if request.membership else None
        return self.get_response(request)


# --- unauthenticated API calls ----------------------------------------------------------

UNAUTHENTICATED_WINDOW_SECONDS = 60


class UnauthenticatedApiRequest(HttpRequest):
    """An API request as this middleware marks it (a type only, like TenantRequest)."""

    unauthenticated_rate_limit: LimitResult
    api_caller_verified: bool  # set by the API base view once the caller is proven


def _presents_active_cached_key(request: HttpRequest) -> bool:
    """A known, active key already in the cache: the caller is a customer, and the
    check cost no database work (the cache lookup is reused by authentication)."""
    raw_key = raw_key_from_headers(request.headers)
    if raw_key is None or not key_looks_valid(raw_key):
        return False
    api_key = api_key_cached(key_hash(raw_key))
    return api_key is not None and api_key_status(api_key=api_key) == ApiKeyStatus.ACTIVE


class UnauthenticatedApiLimitMiddleware:
    """Rate-limit API calls per client address until they prove who they are.

    Placed before the session is read: an API call with no credentials, a bad or
    unknown key, or a session cookie reserves a slot in its address's window
    (atomic, in Redis) before any database work, and is refused with 429 once the
    window is full. A call that then authenticates (the API base view marks it)
    gives its slot back, so only anonymous and failed calls stay counted. Calls
    with a cached active key, nearly all of a customer's traffic, skip this
    entirely. The RateLimit-* headers of 401 answers come from this window.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: UnauthenticatedApiRequest) -> HttpResponse:
        if not request.path.startswith("/api/") or _presents_active_cached_key(request):
            return self.get_response(request)
        bucket = f"api-unauthenticated:{client_ip(request) or 'unknown'}"
        result = limit_hit(
            bucket=bucket,
            limit=settings.API_UNAUTHENTICATED_PER_MINUTE,
            window_seconds=UNAUTHENTICATED_WINDOW_SECONDS,
        )
        if not result.allowed:
            body = error_body(
                "rate_limited",
                "Too many unauthenticated requests from your address; retry later.",
                {"retry_after": result.reset_seconds},
            )
            refusal = JsonResponse(body, status=429)
            refusal["Retry-After"] = str(result.reset_seconds)
            for header, value in result.headers().items():
                refusal[header] = value
            return refusal
        request.unauthenticated_rate_limit = result
        response = self.get_response(request)
        if getattr(request, "api_caller_verified", False):
            limit_refund(bucket=bucket, window_seconds=UNAUTHENTICATED_WINDOW_SECONDS)
        return response


# --- staff and two-factor sign-in -------------------------------------------------------

ADMIN_PREFIX = "/admin/"


def staff_mfa_redirect(request: HttpRequest) -> HttpResponse | None:
    """Where a signed-in staff member must go before the admin, or None if they may enter.

    The admin can read and change every customer's data, so a stolen staff password
    alone must not open it: staff need a TOTP authenticator (those without one are
    sent to set it up) and a session that passed it (else they confirm a code first).
    Anonymous visitors are sent to the allauth sign-in by the admin itself
    (accounts.admin), and non-staff are refused there.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return None
    query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
    if not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        return HttpResponseRedirect(f"{reverse('mfa_activate_totp')}?{query}")
    passed = any(r.get("method") == "mfa" for r in get_authentication_records(request, user))
    if not passed:
        return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{query}")
    return None


class StaffMfaMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(ADMIN_PREFIX):
            redirect = staff_mfa_redirect(request)
            if redirect is not None:
                return redirect
        return self.get_response(request)
