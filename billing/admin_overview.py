"""The organization's page in the admin as the customer experiences it.

An operator answering "why is this customer limited?" needs, on one page, the plan
in force and where it comes from (override, subscription or free), today's usage
against the plan, the keys, the members and what happened recently. These helpers
render those read-only panels for OrganizationAdmin; every figure comes from the
same selectors the product uses, so the admin never disagrees with the customer's
own pages.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import ApiKey, AuditLog, Organization
from accounts.services.api_keys import api_key_status
from billing.entitlements import entitlements_for
from billing.models import Plan
from billing.selectors import plan_override_active, subscription_current, usage_summary

RECENT_AUDIT_ROWS = 15


def _rows(rows: list[tuple[str, object]]) -> SafeString:
    body = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", rows)
    return format_html("<table class='qs-admin-facts'><tbody>{}</tbody></table>", body)


def plan_overview(organization: Organization) -> SafeString:
    entitlements = entitlements_for(organization=organization)
    override = plan_override_active(organization=organization)
    subscription = subscription_current(organization=organization)
    summary = usage_summary(organization=organization)
    grant_url = reverse("admin:billing_planoverride_add") + f"?organization={organization.pk}"
    source: str  # markup from format_html, or plain text that is escaped on output
    if override is not None:
        source = format_html(
            "Override: <a href='{}'>{}</a> until {} (reason: {})",
            reverse("admin:billing_planoverride_change", args=[override.pk]),
            override.plan,
            override.until.strftime("%Y-%m-%d %H:%M UTC") if override.until else "removed",
            override.reason,
        )
    elif entitlements.status == "none":
        source = "No paying subscription: the free plan"
    else:
        source = f"Subscription ({entitlements.status})"
    subscription_text = (
        format_html(
            "<a href='{}'>{}</a>: {} · {}, period ends {}",
            reverse("admin:billing_subscription_change", args=[subscription.pk]),
            subscription.stripe_subscription_id,
            subscription.plan or "unknown price",
            subscription.get_status_display(),
            subscription.current_period_end.strftime("%Y-%m-%d")
            if subscription.current_period_end
            else "unknown",
        )
        if subscription is not None
        else "None"
    )
    delay = entitlements.stream_delay_seconds
    return _rows(
        [
            ("Plan", format_html("<strong>{}</strong>", entitlements.plan_name)),
            ("From", source),
            ("Subscription", subscription_text),
            (
                "Limits",
                f"{entitlements.requests_per_minute:,} API requests a minute; "
                f"{entitlements.ws_connections} stream connection(s) of "
                f"{entitlements.ws_subscriptions} channels; "
                + (f"delayed {delay // 60} min" if delay else "real time"),
            ),
            ("API requests today", f"{summary.api_requests_today:,}"),
            ("Stream messages today", f"{summary.stream_messages_today:,}"),
            (
                "This period",
                f"{summary.api_requests:,} API requests, "
                f"{summary.stream_messages:,} stream messages",
            ),
            ("Grant a plan", format_html("<a href='{}'>Add a plan override</a>", grant_url)),
        ]
    )


def keys_overview(organization: Organization) -> SafeString:
    keys = ApiKey.objects.filter(organization=organization).order_by("-created_at")[:50]
    if not keys:
        return format_html("{}", "No API keys.")
    rows = format_html_join(
        "",
        "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                reverse("admin:accounts_apikey_change", args=[key.pk]),
                key.name or "(unnamed)",
                key.masked,
                api_key_status(api_key=key),
                key.created_at.strftime("%Y-%m-%d"),
                key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never",
            )
            for key in keys
        ),
    )
    return format_html(
        "<table><thead><tr><th>Name</th><th>Key</th><th>Status</th><th>Created</th>"
        "<th>Last used</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


def audit_overview(organization: Organization) -> SafeString:
    entries = (
        AuditLog.objects.filter(organization=organization)
        .select_related("actor")
        .order_by("-created_at")[:RECENT_AUDIT_ROWS]
    )
    if not entries:
        return format_html("{}", "Nothing recorded yet.")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                entry.get_action_display(),
                entry.actor.email if entry.actor else "(system or key)",
                entry.target,
            )
            for entry in entries
        ),
    )
    more = reverse("admin:accounts_auditlog_changelist") + "?" + urlencode({"q": organization.name})
    return format_html(
        "<table><thead><tr><th>When (UTC)</th><th>What</th><th>Who</th><th>Target</th></tr>"
        "</thead><tbody>{}</tbody></table><p><a href='{}'>All audit entries</a></p>",
        rows,
        more,
    )


class PlanFilter(admin.SimpleListFilter):
    """The plan in force now (override, subscription or free), as the customer has it."""

    title = "plan"
    parameter_name = "plan"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Organization]
    ) -> list[tuple[str, str]]:
        return [(plan.code, plan.name) for plan in Plan.objects.order_by("price_cents", "pk")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Organization]
    ) -> QuerySet[Organization]:
        code = self.value()
        if not code:
            return queryset
        wanted = [
            organization.pk
            for organization in queryset.only("pk")
            if entitlements_for(organization=organization).plan == code
        ]
        return queryset.filter(pk__in=wanted)
