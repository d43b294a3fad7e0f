"""The alerts page of the current organization: rules, the delivery log, the webhook secret.

Every member sees rules and the log; owners and admins create, enable, disable and
delete rules, and see and rotate the webhook secret. All of it goes through
alerts.services, as the API does.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import membership_or_404, signed_in_user
from accounts.models import Membership
from accounts.services.audit import client_ip
from alerts import selectors, services
from alerts.models import AlertKind, AlertRule, Direction
from billing.entitlements import entitlements_for
from marketdata.models import Exchange


class AlertRuleForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    kind = forms.ChoiceField(choices=AlertKind.choices)
    exchange = forms.ChoiceField(choices=())
    symbol = forms.CharField(
        max_length=32, required=False, help_text="BASE-QUOTE, e.g. BTC-USD. Not for feed down."
    )
    direction = forms.ChoiceField(choices=Direction.choices, required=False)
    threshold = forms.FloatField(
        required=False, help_text="Price level, percent, or OFI/VPIN value."
    )
    window_seconds = forms.IntegerField(
        required=False, min_value=0, help_text="Percent move: its window. Feed down: grace."
    )
    cooldown_seconds = forms.IntegerField(required=False, min_value=0, initial=60)
    email = forms.EmailField(required=False)
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        exchanges = Exchange.objects.filter(enabled=True).order_by("id")
        cast(forms.ChoiceField, self.fields["exchange"]).choices = [
            (e.pk, e.name) for e in exchanges
        ]


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage alerts.")


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor(user=signed_in_user(request), ip_address=client_ip(request))


def _page(
    request: HttpRequest, membership: Membership, form: AlertRuleForm, *, status: int = 200
) -> HttpResponse:
    organization = membership.organization
    context = {
        "rules": selectors.alert_rules_for(organization=organization),
        "deliveries": selectors.alert_deliveries_for(organization=organization, limit=50),
        "form": form,
        "can_manage": membership.can_manage,
        "limit": entitlements_for(organization=organization).alert_rules,
        "secret": (
            services.alert_webhook_secret_ensure(organization=organization)
            if membership.can_manage
            else None
        ),
    }
    return render(request, "alerts/alerts.html", context, status=status)


@never_cache  # the page shows the webhook secret to managers
@login_required
@require_http_methods(["GET", "HEAD"])
def alert_list(request: HttpRequest) -> HttpResponse:
    return _page(request, membership_or_404(request), AlertRuleForm())


@never_cache
@login_required
@require_POST
def alert_create(request: HttpRequest) -> HttpResponse:
    membership = membership_or_404(request)
    _require_manager(membership)
    form = AlertRuleForm(request.POST)
    if not form.is_valid():
        return _page(request, membership, form, status=400)
    try:
        services.alert_rule_create(
            organization=membership.organization, data=form.cleaned_data, actor=_actor(request)
        )
    except services.AlertRuleInvalid as exc:
        for field, message in exc.errors.items():
            form.add_error(field if field in form.fields else None, message)
        return _page(request, membership, form, status=400)
    except services.AlertRuleQuotaExceeded as exc:
        form.add_error(None, str(exc))
        return _page(request, membership, form, status=403)
    messages.success(request, "Alert rule created. It is live within a few seconds.")
    return redirect("alerts")


def _rule_or_404(membership: Membership, rule_id: int) -> AlertRule:
    # Looked up inside the current organization only: another tenant's rule is a 404.
    rule = selectors.alert_rule_get(organization=membership.organization, rule_id=rule_id)
    if rule is None:
        raise Http404("No such alert rule.")
    return rule


@login_required
@require_POST
def alert_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    membership = membership_or_404(request)
    rule = _rule_or_404(membership, rule_id)
    _require_manager(membership)
    changes = {"enabled": not rule.enabled}
    services.alert_rule_update(rule=rule, changes=changes, actor=_actor(request))
    return redirect("alerts")


@login_required
@require_POST
def alert_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    membership = membership_or_404(request)
    rule = _rule_or_404(membership, rule_id)
    _require_manager(membership)
    services.alert_rule_delete(rule=rule, actor=_actor(request))
    messages.success(request, "Alert rule deleted.")
    return redirect("alerts")


@login_required
@require_POST
def alert_secret_rotate(request: HttpRequest) -> HttpResponse:
    membership = membership_or_404(request)
    _require_manager(membership)
    organization = membership.organization
    services.alert_webhook_secret_rotate(organization=organization, actor=_actor(request))
    messages.success(request, "Webhook secret replaced. Update your receivers now.")
    return redirect("alerts")
