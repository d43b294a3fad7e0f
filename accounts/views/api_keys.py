"""The API keys page of the current organization: list, create (key shown once), revoke.

Every member sees the list; only owners and admins create or revoke.

Creating follows Post/Redirect/Get: the POST creates the key, parks the raw key in
the session under the key's id and redirects to GET /keys/new/, which takes it out
of the session and shows it (`no-store`). A reload of that page finds nothing to
show and says the key was shown once, a reload can never POST again (no second key),
and the raw key stays in the session for one redirect only.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.decorators import SignedInRequest, membership_or_404
from accounts.models import Membership
from accounts.selectors import api_key_get, api_keys_for_organization
from accounts.services import api_keys as key_services
from accounts.services.api_keys import ApiKeyExpiryInvalid, ApiKeyQuotaExceeded, api_key_status
from accounts.services.audit import client_ip


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="Something to recognise it by, such as the program that uses it.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires after",
        help_text="Optional. The key stops working at the end of this day (UTC).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


PENDING_KEY_SESSION = "qs_new_api_key"


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage API keys.")


def _list_page(
    request: HttpRequest, membership: Membership, form: ApiKeyCreateForm, *, status: int = 200
) -> HttpResponse:
    keys = list(api_keys_for_organization(organization=membership.organization))
    rows = [{"key": key, "status": api_key_status(api_key=key)} for key in keys]
    context = {"rows": rows, "form": form, "can_manage": membership.can_manage}
    return render(request, "accounts/api_keys.html", context, status=status)


@login_required
@require_http_methods(["GET", "HEAD"])
def api_key_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, membership_or_404(request), ApiKeyCreateForm())


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_key_create(request: SignedInRequest) -> HttpResponse:
    membership = membership_or_404(request)
    if request.method != "POST":
        return _created_page(request, membership)
    _require_manager(membership)
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _list_page(request, membership, form, status=400)
    try:
        created = key_services.api_key_create(
            organization=membership.organization,
            created_by=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.expires_at(),
            ip_address=client_ip(request),
        )
    except ApiKeyExpiryInvalid as exc:
        form.add_error("expires_on", str(exc))
        return _list_page(request, membership, form, status=400)
    except ApiKeyQuotaExceeded as exc:
        form.add_error(None, str(exc))
        return _list_page(request, membership, form, status=403)
    request.session[PENDING_KEY_SESSION] = {
        "id": created.api_key.pk,
        "organization": membership.organization_id,
        "raw": created.raw_key,
    }
    return redirect("api_key_create")


def _created_page(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The one showing of a key just created; afterwards only a note that it was shown."""
    pending = request.session.pop(PENDING_KEY_SESSION, None)
    if not pending or pending.get("organization") != membership.organization_id:
        messages.info(
            request,
            "A new key is shown only once, right after it is created. "
            "If you did not copy it, revoke it and create another.",
        )
        return redirect("api_keys")
    api_key = api_key_get(organization=membership.organization, api_key_id=pending["id"])
    if api_key is None:
        return redirect("api_keys")
    # never_cache sets Cache-Control: no-store among others: the key must not be
    # kept by the browser's cache or any proxy, and it is shown in this response only.
    return render(
        request, "accounts/key_created.html", {"api_key": api_key, "raw_key": pending["raw"]}
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_key_revoke(request: SignedInRequest, api_key_id: int) -> HttpResponse:
    membership = membership_or_404(request)
    # Looked up inside the current organization only: another tenant's key is a 404.
    api_key = api_key_get(organization=membership.organization, api_key_id=api_key_id)
    if api_key is None:
        raise Http404("No such API key.")
    _require_manager(membership)
    if request.method != "POST":
        # Revoking cannot be undone, so the link asks first; the POST (with CSRF) acts.
        return render(request, "accounts/api_key_revoke.html", {"api_key": api_key})
    key_services.api_key_revoke(api_key=api_key, actor=request.user, ip_address=client_ip(request))
    messages.success(request, f"Revoked {api_key}. Programs using it are refused from now on.")
    return redirect("api_keys")
