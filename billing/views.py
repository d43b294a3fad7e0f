"""Billing web pages: pricing, the organization's billing and usage pages, Checkout and Portal.

Only owners and admins may start Checkout or open the Portal (they spend money or
see invoices); every member may look at the plan and usage.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

import stripe
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import OrganizationRequest, View, organization_required
from accounts.services.audit import client_ip
from billing.entitlements import entitlements_for
from billing.forms import CheckoutForm, UpgradeRequestForm
from billing.pricing import duration_words, plan_comparison
from billing.selectors import (
    plan_get,
    plan_override_active,
    plans_public,
    stripe_customer_for,
    subscription_current,
    usage_summary,
)
from billing.services.checkout import (
    CheckoutUnavailable,
    checkout_session_create,
    portal_session_create,
)
from billing.services.upgrade_requests import upgrade_request_create
from billing.stripe_client import stripe_configured

logger = logging.getLogger(__name__)
STRIPE_DOWN = "Stripe could not be reached just now; nothing was charged. Please try again."


def manager_required(view: View) -> View:
    @organization_required
    @wraps(view)
    def wrapper(request: OrganizationRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.membership.can_manage:
            raise PermissionDenied("Only owners and admins can change billing.")
        return view(request, *args, **kwargs)

    return wrapper


def _billing_context(request: OrganizationRequest) -> dict[str, Any]:
    organization = request.organization
    entitlements = entitlements_for(organization=organization)
    return {
        "organization": organization,
        "entitlements": entitlements,
        "subscription": subscription_current(organization=organization),
        "override": plan_override_active(organization=organization),
        "has_customer": stripe_customer_for(organization=organization) is not None,
        "can_manage": request.membership.can_manage,
        "stripe_configured": stripe_configured(),
        "plans": plans_public(),
        "delay_words": duration_words(entitlements.stream_delay_seconds or 0),
    }


def pricing(request: HttpRequest) -> HttpResponse:
    """Public; generated from the plans, so an admin edit shows here at once."""
    membership = getattr(request, "membership", None)
    organization = getattr(request, "organization", None)
    plans = list(plans_public())
    current = entitlements_for(organization=organization).plan if organization else None
    current_plan = next((p for p in plans if p.code == current), None)
    context = {
        "plans": plans,
        "rows": plan_comparison(plans),
        "stripe_configured": stripe_configured(),
        "can_manage": bool(membership and membership.can_manage),
        "current_plan": current,
        "current_price": current_plan.price_cents if current_plan else 0,
    }
    return render(request, "billing/pricing.html", context)


@manager_required
def upgrade_request(request: OrganizationRequest) -> HttpResponse:
    """Without online payment, asking for a plan is a request an operator answers."""
    current = entitlements_for(organization=request.organization).plan
    form = UpgradeRequestForm(
        request.POST or None,
        exclude=current,
        initial={"plan": request.GET.get("plan", "")},
    )
    if request.method == "POST" and form.is_valid():
        plan = plan_get(code=form.cleaned_data["plan"])
        if plan is None:  # withdrawn between the form's choices and now
            messages.error(request, "That plan is no longer on offer.")
            return redirect("pricing")
        upgrade_request_create(
            organization=request.organization,
            plan=plan,
            requested_by=request.user,
            message=form.cleaned_data["message"],
            ip_address=client_ip(request),
        )
        messages.success(
            request,
            "Thank you: your request is with our team, and a confirmation is on its way to "
            f"{request.user.email}. Nothing changes or is charged until we answer.",
        )
        return redirect("billing")
    status = 400 if request.method == "POST" else 200
    return render(request, "billing/upgrade_request.html", {"form": form}, status=status)


@organization_required
def billing_overview(request: OrganizationRequest) -> HttpResponse:
    return render(request, "billing/billing.html", _billing_context(request))


@organization_required
def usage_page(request: OrganizationRequest) -> HttpResponse:
    summary = usage_summary(organization=request.organization)
    return render(request, "billing/usage.html", {"summary": summary})


@require_POST
@manager_required
def checkout_start(request: OrganizationRequest) -> HttpResponse:
    if not stripe_configured():
        messages.error(request, "Online payment is not configured on this server.")
        return redirect("billing")
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the plans on offer.")
        return redirect("pricing")
    organization = request.organization
    subscription = subscription_current(organization=organization)
    if subscription is not None and entitlements_for(organization=organization).status in (
        "active",
        "trialing",
        "past_due",
    ):
        # A second Checkout would start a second subscription; plan changes go
        # through the Portal, which swaps the price on the existing one.
        return portal_start(request)
    plan = plan_get(code=form.cleaned_data["plan"])
    if plan is None:  # withdrawn between the form's choices and now
        messages.error(request, "Choose one of the plans on offer.")
        return redirect("pricing")
    try:
        url = checkout_session_create(organization=organization, plan=plan, user=request.user)
    except CheckoutUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("billing")
    except stripe.StripeError:
        logger.exception("Stripe Checkout could not be started")
        messages.error(request, STRIPE_DOWN)
        return redirect("billing")
    return redirect(url, permanent=False)


@require_POST
@manager_required
def portal_start(request: OrganizationRequest) -> HttpResponse:
    if not stripe_configured():
        messages.error(request, "Online payment is not configured on this server.")
        return redirect("billing")
    try:
        url = portal_session_create(organization=request.organization, user=request.user)
    except stripe.StripeError:
        logger.exception("Stripe Billing Portal could not be opened")
        messages.error(request, STRIPE_DOWN)
        return redirect("billing")
    return redirect(url, permanent=False)


@organization_required
def checkout_success(request: OrganizationRequest) -> HttpResponse:
    """Says what is true now: active only once Stripe has told us (webhook or reconcile)."""
    context = _billing_context(request)
    context["pending"] = context["entitlements"].status not in ("active", "trialing")
    return render(request, "billing/checkout_success.html", context)


@organization_required
def checkout_cancel(request: OrganizationRequest) -> HttpResponse:
    return render(request, "billing/checkout_cancel.html", _billing_context(request))
