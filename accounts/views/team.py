"""The team page of the current organization: members, roles and invitations.

Every id in a URL is looked up inside the current organization only, so another
organization's members and invitations answer 404 before any rule is checked.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import OrganizationRequest, organization_required
from accounts.forms import InvitationForm, MembershipRoleForm
from accounts.models import Membership, Role
from accounts.selectors import invitations_pending, organization_members
from accounts.services import invitations as invitation_services
from accounts.services import organizations as organization_services
from accounts.services.audit import client_ip
from accounts.services.organizations import MembershipError, MembershipPermissionError


def _refusal(request: HttpRequest, error: MembershipError) -> HttpResponse:
    """A role that may never do this gets 403; a rule about this case, a message."""
    if isinstance(error, MembershipPermissionError):
        raise PermissionDenied(str(error))
    messages.error(request, str(error))
    return redirect("team")


def _team_page(
    request: OrganizationRequest, *, invite_form: InvitationForm | None = None, status: int = 200
) -> HttpResponse:
    membership = request.membership
    is_owner = membership.role == Role.OWNER
    assignable_roles = [(v, label) for v, label in Role.choices if is_owner or v != Role.OWNER]
    context = {
        "organization": request.organization,
        "membership": membership,
        "can_manage": membership.can_manage,
        "is_owner": is_owner,
        "members": organization_members(organization=request.organization),
        "invitations": invitations_pending(organization=request.organization).select_related(
            "invited_by"
        ),
        "invite_form": invite_form or InvitationForm(),
        "assignable_roles": assignable_roles,
    }
    return render(request, "accounts/team.html", context, status=status)


@organization_required
def team(request: OrganizationRequest) -> HttpResponse:
    return _team_page(request)


@require_POST
@organization_required
def invitation_create(request: OrganizationRequest) -> HttpResponse:
    if not request.membership.can_manage:
        raise PermissionDenied("Only owners and admins can invite people.")
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _team_page(request, invite_form=form, status=400)
    try:
        invitation = invitation_services.invitation_create(
            organization=request.organization,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            invited_by=request.user,
            ip_address=client_ip(request),
        )
    except MembershipError as error:
        return _refusal(request, error)
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("team")


@require_POST
@organization_required
def invitation_revoke(request: OrganizationRequest, invitation_id: int) -> HttpResponse:
    invitation = (
        invitations_pending(organization=request.organization).filter(pk=invitation_id).first()
    )
    if invitation is None:
        raise Http404("No such invitation.")
    try:
        invitation_services.invitation_revoke(
            organization=request.organization,
            invitation=invitation,
            actor=request.user,
            ip_address=client_ip(request),
        )
    except MembershipError as error:
        return _refusal(request, error)
    messages.success(request, f"Invitation to {invitation.email} revoked.")
    return redirect("team")


def _member_or_404(request: OrganizationRequest, membership_id: int) -> Membership:
    member = organization_members(organization=request.organization).filter(pk=membership_id)
    found = member.first()
    if found is None:
        raise Http404("No such member.")
    return found


@require_POST
@organization_required
def membership_role(request: OrganizationRequest, membership_id: int) -> HttpResponse:
    target = _member_or_404(request, membership_id)
    form = MembershipRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner, admin or member.")
        return redirect("team")
    try:
        changed = organization_services.membership_role_change(
            organization=request.organization,
            membership=target,
            role=form.cleaned_data["role"],
            actor=request.user,
            ip_address=client_ip(request),
        )
    except MembershipError as error:
        return _refusal(request, error)
    messages.success(request, f"{changed.user.email} is now {changed.get_role_display().lower()}.")
    return redirect("team")


@require_http_methods(["GET", "HEAD", "POST"])
@organization_required
def membership_remove(request: OrganizationRequest, membership_id: int) -> HttpResponse:
    target = _member_or_404(request, membership_id)
    leaving = target.user_id == request.user.pk
    if request.method != "POST":
        # Leaving or removing cannot be undone from here (it takes a new invitation), so
        # the button on the team page asks first; the POST (with CSRF) acts.
        context = {"target": target, "leaving": leaving, "organization": request.organization}
        return render(request, "accounts/membership_remove.html", context)
    try:
        organization_services.membership_remove(
            organization=request.organization,
            membership=target,
            actor=request.user,
            ip_address=client_ip(request),
        )
    except MembershipError as error:
        return _refusal(request, error)
    if leaving:
        # The middleware falls back to another membership on the next request.
        messages.success(request, f"You left {request.organization.name}.")
        return redirect("dashboard")
    messages.success(request, f"{target.user.email} was removed from the team.")
    return redirect("team")
