from typing import Any

from django.http import HttpRequest

from accounts.selectors import memberships_for_user


def organization(request: HttpRequest) -> dict[str, Any]:
    """The current organization and the switcher's choices, for the site header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = getattr(request, "membership", None)
    return {
        "current_membership": membership if membership else None,
        "current_organization": membership.organization if membership else None,
        "user_memberships": memberships_for_user(user=user).order_by("organization__name"),
    }
