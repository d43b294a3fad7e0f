"""Resolve the signed-in user's current organization once per request.

The choice lives in the session (users switch it from the header); it is
validated against the user's memberships on every request, so a stale or
forged session value can never reach another tenant.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from accounts.models import Membership
from accounts.selectors import organization_for_user

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

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Resolved eagerly (one indexed query for signed-in users) so that views can
        # test `request.organization is None` without lazy-object surprises.
        request.membership = current_membership(request)
        request.organization = request.membership.organization if request.membership else None
        return self.get_response(request)
