"""Billing web pages: pricing, the organization's billing and usage pages, Checkout and Portal.

Only owners and admins may start Checkout or open the Portal (they spend money or
see invoices); every member may look at the plan and usage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.entitlements import entitlements_for
from billing.forms import CheckoutForm
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
from billing.stripe_client import stripe_configured

logger = logging.getLogger(__name__)
View = Callable[..., HttpResponse]
STRIPE_DOWN = "Stripe could not be reached just now; nothing was charged. Please try again."


def organization_required(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.organization is None:
            return redirect("organization_create")
        return view(request, *args, **kwargs)

    return wrapper


def manager_required(view: View) -> View:
    @organization_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.membership.can_manage:
            raise PermissionDenied("Only owners and admins can change billing.")
        return view(request, *args, **kwargs)

    return wrapper


def _billing_context(request: HttpRequest) -> dict:
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
    }


def pricing(request: HttpRequest) -> HttpResponse:
    """Public; generated from the plans, so an admin edit shows here at once."""
    membership = getattr(request, "membership", None)
    context = {
        "plans": plans_public(),
        "stripe_configured": stripe_configured(),
        "can_manage": bool(membership and membership.can_manage),
        "current_plan": (
            entitlements_for(organization=request.organization).plan
            if getattr(request, "organization", None)
            else None
        ),
    }
    return render(request, "billing/pricing.html", context)


@organization_required
def billing_overview(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/billing.html", _billing_context(request))


@organization_required
def usage_page(request: HttpRequest) -> HttpResponse:
    summary = usage_summary(organization=request.organization)
    return render(request, "billing/usage.html", {"summary": summary})


@require_POST
@manager_required
def checkout_start(request: HttpRequest) -> HttpResponse:
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
def portal_start(request: HttpRequest) -> HttpResponse:
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
def checkout_success(request: HttpRequest) -> HttpResponse:
    """Says what is true now: active only once Stripe has told us (webhook or reconcile)."""
    context = _billing_context(request)
    context["pending"] = context["entitlements"].status not in ("active", "trialing")
    return render(request, "billing/checkout_success.html", context)


@organization_required
def checkout_cancel(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/checkout_cancel.html", _billing_context(request))
