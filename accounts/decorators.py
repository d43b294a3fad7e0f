"""Page guards for the current organization, written once for every app's web views.

The middleware (accounts.middleware) sets ``request.organization`` and
``request.membership`` from the session; a signed-in user can have none (they
left or were removed from their last organization).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.models import Membership, Organization, User

View = Callable[..., HttpResponse]


class TenantRequest(HttpRequest):
    """A request as the middleware leaves it: the current organization and membership, if any.

    Only a type: views annotate their request with it (or a narrower one below) so the
    attributes the middleware sets are checked rather than read through getattr.
    """

    organization: Organization | None
    membership: Membership | None


class SignedInRequest(TenantRequest):
    """A request past login_required: the user is a real account, never anonymous."""

    user: User


class OrganizationRequest(SignedInRequest):
    """A request past organization_required: the organization and membership are set."""

    organization: Organization
    membership: Membership


def signed_in_user(request: HttpRequest) -> User:
    """The user of a request that can only arrive signed in (the admin, guarded views).

    Anonymous here means a guard is missing, so it is refused rather than trusted.
    """
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Sign in first.")
    return user


def organization_required(view: View) -> View:
    """Signed in and with a current organization: a user without one is sent to create one."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "organization", None) is None:
            return redirect("organization_create")
        return view(request, *args, **kwargs)

    return wrapper


def membership_or_404(request: HttpRequest) -> Membership:
    """The current membership, for pages that answer 404 rather than redirect without one."""
    membership: Membership | None = getattr(request, "membership", None)
    if membership is None:
        raise Http404("You are not a member of any organization.")
    return membership
