"""Resending the email-verification link, for the person whose email never arrived.

The answer is the same whether or not the address has an unverified account (no
account enumeration), and an address gets at most one email a minute, however often
the form is sent (a mailbox cannot be flooded through us).
"""

from __future__ import annotations

import hashlib

from allauth.account.models import EmailAddress
from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

RESEND_INTERVAL_SECONDS = 60


class VerificationResendForm(forms.Form):
    email = forms.EmailField(label="Email address")


def verification_resend_due(email: str) -> bool:
    """True at most once a minute per address (the cache marks the last send)."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return cache.add(f"qs:verification-resend:{digest}", 1, RESEND_INTERVAL_SECONDS)


@require_http_methods(["GET", "HEAD", "POST"])
def verification_resend(request: HttpRequest) -> HttpResponse:
    form = VerificationResendForm(
        request.POST or None, initial={"email": request.GET.get("email", "")}
    )
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if verification_resend_due(email):
            address = (
                EmailAddress.objects.filter(email__iexact=email, verified=False)
                .select_related("user")
                .first()
            )
            if address is not None:
                address.send_confirmation(request)
        messages.info(
            request,
            f"If {email} belongs to an account that is not verified yet, a new link is on "
            "its way. Check your spam folder too; you can ask again in a minute.",
        )
        return redirect(reverse("verification_resend") + "?sent=1")
    status = 400 if request.method == "POST" else 200
    return render(request, "account/verification_resend.html", {"form": form}, status=status)
