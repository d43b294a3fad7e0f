"""Create an organization and switch the current one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.decorators import SignedInRequest
from accounts.forms import OrganizationForm, OrganizationSwitchForm
from accounts.services import organizations as organization_services
from accounts.services.audit import client_ip
from accounts.services.organizations import MembershipError, OrganizationLimitReached


@login_required
def organization_create(request: SignedInRequest) -> HttpResponse:
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = organization_services.organization_create(
                name=form.cleaned_data["name"], owner=request.user, ip_address=client_ip(request)
            )
        except OrganizationLimitReached as error:
            form.add_error(None, str(error))
            return render(request, "accounts/organization_form.html", {"form": form}, status=403)
        organization_services.organization_switch(
            session=request.session, user=request.user, organization_id=organization.pk
        )
        messages.success(request, f"Created {organization.name}. You are its owner.")
        return redirect("team")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/organization_form.html", {"form": form}, status=status)


@require_POST
@login_required
def organization_switch(request: SignedInRequest) -> HttpResponse:
    form = OrganizationSwitchForm(request.POST)
    if not form.is_valid():
        raise Http404("No such organization.")
    try:
        membership = organization_services.organization_switch(
            session=request.session,
            user=request.user,
            organization_id=form.cleaned_data["organization_id"],
        )
    except MembershipError:
        # 404, not 403: whether an organization exists is none of a non-member's business.
        raise Http404("No such organization.") from None
    messages.info(request, f"Switched to {membership.organization.name}.")
    return redirect(_safe_next(request, form.cleaned_data["next"]) or "dashboard")


def _safe_next(request: HttpRequest, target: str) -> str | None:
    """Only same-host targets: an open redirect would lend our domain to phishing links."""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None
