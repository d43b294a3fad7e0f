"""Operators run billing from here: plans, subscriptions, overrides, webhook events, usage.

Stripe-owned fields are read-only: Stripe is the truth for subscriptions, and an
operator who wants to give access grants a PlanOverride (which works with or
without Stripe configured).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

import billing.admin_customers  # noqa: F401  (registers the organization's page)
from accounts.decorators import signed_in_user
from accounts.models import AuditLog
from accounts.services.audit import audit_log_record, client_ip
from billing.models import (
    Plan,
    PlanOverride,
    StripeCustomer,
    Subscription,
    UpgradeRequest,
    UsageDaily,
    WebhookEvent,
)
from billing.services.overrides import plan_override_grant
from billing.services.subscriptions import subscription_sync
from billing.services.webhooks import webhook_event_process
from billing.stripe_client import stripe_configured
from quantsaas.admin_generics import ModelAdmin


@admin.register(Plan)
class PlanAdmin(ModelAdmin[Plan]):
    list_display = [
        "code",
        "name",
        "price_cents",
        "stripe_price_id",
        "requests_per_minute",
        "ws_connections",
        "ws_subscriptions",
        "stream_delay_seconds",
        "history_days",
        "api_keys",
        "analytics",
        "backtests_per_day",
        "book_depth",
        "stream_conflate_floor_ms",
        "is_public",
    ]
    list_editable = ["stripe_price_id", "is_public"]
    fieldsets = [
        (None, {"fields": ["code", "name", "description", "is_public"]}),
        ("Price", {"fields": ["price_cents", "currency", "stripe_price_id"]}),
        (
            "Limits",
            {
                "fields": [
                    "requests_per_minute",
                    "ws_connections",
                    "ws_subscriptions",
                    "stream_delay_seconds",
                    "history_days",
                    "api_keys",
                    "analytics",
                    "backtests_per_day",
                    "alert_rules",
                    "book_depth",
                    "stream_conflate_floor_ms",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Plan | None = None) -> list[str]:
        # Code refers to plans by code ("free" is the fallback); renaming one breaks that.
        return ["code"] if obj is not None else []


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ModelAdmin[StripeCustomer]):
    list_display = ["organization", "stripe_customer_id", "created_at"]
    search_fields = ["stripe_customer_id", "organization__name", "organization__slug"]
    autocomplete_fields = ["organization"]


@admin.register(Subscription)
class SubscriptionAdmin(ModelAdmin[Subscription]):
    list_display = [
        "organization",
        "plan",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "past_due_since",
        "stripe_subscription_id",
        "synced_at",
    ]
    list_filter = ["status", "plan", "cancel_at_period_end"]
    search_fields = [
        "stripe_subscription_id",
        "stripe_customer_id",
        "organization__name",
        "organization__slug",
    ]
    readonly_fields = [
        "organization",
        "stripe_subscription_id",
        "stripe_customer_id",
        "stripe_price_id",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "canceled_at",
        "past_due_since",
        "created_at",
        "synced_at",
    ]
    actions = ["sync_from_stripe"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # subscriptions come from Stripe; grant access with an override

    @admin.action(description="Re-read the selected subscriptions from Stripe")
    def sync_from_stripe(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        if not stripe_configured():
            self.message_user(request, "Stripe is not configured.", messages.ERROR)
            return
        for subscription in queryset:
            subscription_sync(stripe_subscription_id=subscription.stripe_subscription_id)
        self.message_user(request, f"Synced {queryset.count()} subscription(s).")


def plan_grant_audit(request: HttpRequest, override: PlanOverride, *, action: str) -> None:
    """Plan grants change what a customer gets: the organization's audit log says so."""
    audit_log_record(
        organization=override.organization,
        action=action,
        actor=signed_in_user(request),
        target=override.plan.code,
        details={
            "override": override.pk,
            "until": override.until.isoformat() if override.until else None,
        },
        ip_address=client_ip(request),
    )


@admin.register(PlanOverride)
class PlanOverrideAdmin(ModelAdmin[PlanOverride]):
    list_display = ["organization", "plan", "until", "reason", "granted_by", "created_at"]
    list_filter = ["plan"]
    search_fields = ["organization__name", "organization__slug", "reason"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["granted_by", "created_at"]
    fields = ["organization", "plan", "until", "reason", "granted_by", "created_at"]

    def save_model(
        self,
        request: HttpRequest,
        obj: PlanOverride,
        form: forms.ModelForm[PlanOverride],
        change: bool,
    ) -> None:
        if not change:
            obj.granted_by = signed_in_user(request)  # who granted it is recorded, not typed in
        super().save_model(request, obj, form, change)
        action = AuditLog.Action.PLAN_CHANGED if change else AuditLog.Action.PLAN_GRANTED
        plan_grant_audit(request, obj, action=action)

    def delete_model(self, request: HttpRequest, obj: PlanOverride) -> None:
        plan_grant_audit(request, obj, action=AuditLog.Action.PLAN_GRANT_REMOVED)
        super().delete_model(request, obj)


@admin.register(UpgradeRequest)
class UpgradeRequestAdmin(ModelAdmin[UpgradeRequest]):
    """Customers asking for a plan while online payment is off; grant it from here."""

    list_display = ["created_at", "organization", "plan", "contact_email", "status", "handled_at"]
    list_filter = ["status", "plan"]
    search_fields = ["organization__name", "organization__slug", "contact_email", "message"]
    autocomplete_fields = ["organization"]
    readonly_fields = [
        "organization",
        "plan",
        "requested_by",
        "contact_email",
        "message",
        "created_at",
    ]
    fields = [*readonly_fields, "status", "operator_notes", "handled_at"]
    actions = ["grant"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers create them from the pricing page

    @admin.action(description="Grant the requested plan (an override without end)")
    def grant(self, request: HttpRequest, queryset: QuerySet[UpgradeRequest]) -> None:
        granted = 0
        for upgrade in queryset.filter(status=UpgradeRequest.Status.OPEN):
            override = plan_override_grant(
                organization=upgrade.organization,
                plan=upgrade.plan,
                reason=f"Upgrade request #{upgrade.pk}",
                granted_by=signed_in_user(request),
            )
            plan_grant_audit(request, override, action=AuditLog.Action.PLAN_GRANTED)
            upgrade.status = UpgradeRequest.Status.GRANTED
            upgrade.handled_at = timezone.now()
            upgrade.save(update_fields=["status", "handled_at"])
            granted += 1
        self.message_user(request, f"Granted {granted} request(s); open ones only.")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ModelAdmin[WebhookEvent]):
    list_display = ["received_at", "type", "stripe_event_id", "outcome", "attempts", "processed_at"]
    list_filter = ["outcome", "type"]
    search_fields = ["stripe_event_id", "type"]
    readonly_fields = [
        "stripe_event_id",
        "type",
        "outcome",
        "error",
        "attempts",
        "received_at",
        "processed_at",
        "payload_pretty",
        "raw_body",
    ]
    exclude = ["payload"]
    actions = ["reprocess"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Payload")
    def payload_pretty(self, obj: WebhookEvent) -> str:
        if obj.payload is None:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(description="Re-process the selected events (re-reads Stripe)")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        done = failed = skipped = 0
        for event in queryset:
            if not event.stripe_event_id:
                skipped += 1  # unverified deliveries are never applied
            elif webhook_event_process(webhook_event_id=event.pk, force=True):
                done += 1
            else:
                failed += 1
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(
            request,
            f"Re-processed {done}, failed {failed}, skipped {skipped} unverified.",
            level,
        )


@admin.register(UsageDaily)
class UsageDailyAdmin(ModelAdmin[UsageDaily]):
    list_display = ["organization", "date", "api_requests", "stream_messages", "updated_at"]
    list_filter = ["date"]
    search_fields = ["organization__name", "organization__slug"]
    date_hierarchy = "date"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False
