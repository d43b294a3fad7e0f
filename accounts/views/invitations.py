"""The page an invitation email links to."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from allauth.account.adapter import get_adapter
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.models import Invitation
from accounts.services import invitations as invitation_services
from accounts.services.audit import client_ip
from accounts.services.invitations import (
    InvitationError,
    invitation_check_recipient,
    invitation_from_token,
)

# What a visitor notices: a link that never worked is "not found"; one that worked
# once but no longer does is "gone"; someone else's invitation is "forbidden".
STATUS_FOR_CODE = {"invalid": 404, "expired": 410, "revoked": 410, "used": 410, "wrong_user": 403}


def _page(request: HttpRequest, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    return render(request, "accounts/invitation_accept.html", context, status=status)


def _refused(
    request: HttpRequest, error: InvitationError, invitation: Invitation | None = None
) -> HttpResponse:
    context = {"error": error.message, "invitation": invitation}
    return _page(request, context, status=STATUS_FOR_CODE.get(error.code, 400))


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Anyone holding the link sees what it is for; only the invitee can accept it."""
    try:
        invitation = invitation_from_token(token=token)
    except InvitationError as error:
        return _refused(request, error)

    if not request.user.is_authenticated:
        # Back to this link after signing in or signing up. Holding the link proves the
        # mailbox it was sent to, so signing up with that address needs no second
        # verification email: allauth treats a stashed address as verified.
        get_adapter(request).stash_verified_email(request, invitation.email)
        query = urlencode({"next": request.get_full_path()})
        signup = urlencode({"next": request.get_full_path(), "email": invitation.email})
        context = {
            "invitation": invitation,
            "login_url": f"{reverse('account_login')}?{query}",
            "signup_url": f"{reverse('account_signup')}?{signup}",
        }
        return _page(request, context)

    try:
        invitation_check_recipient(invitation=invitation, user=request.user)
    except InvitationError as error:
        return _refused(request, error, invitation)

    if request.method != "POST":
        return _page(request, {"invitation": invitation, "can_accept": True})

    try:
        membership = invitation_services.invitation_accept(
            token=token, user=request.user, session=request.session, ip_address=client_ip(request)
        )
    except InvitationError as error:
        return _refused(request, error, invitation)
    messages.success(
        request,
        f"Welcome to {membership.organization.name}. "
        f"You joined as {membership.get_role_display().lower()}.",
    )
    return redirect("dashboard")
