"""Operators run billing from here: plans, subscriptions, overrides, webhook events, usage.

Stripe-owned fields are read-only: Stripe is the truth for subscriptions, and an
operator who wants to give access grants a PlanOverride (which works with or
without Stripe configured).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html

from billing.models import (
    Plan,
    PlanOverride,
    StripeCustomer,
    Subscription,
    UsageDaily,
    WebhookEvent,
)
from billing.services.subscriptions import subscription_sync
from billing.services.webhooks import webhook_event_process
from billing.stripe_client import stripe_configured


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
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
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        # Code refers to plans by code ("free" is the fallback); renaming one breaks that.
        return ["code"] if obj is not None else []


@admin.register(StripeCustomer)
class StripeCustomerAdmin(admin.ModelAdmin):
    list_display = ["organization", "stripe_customer_id", "created_at"]
    search_fields = ["stripe_customer_id", "organization__name", "organization__slug"]
    raw_id_fields = ["organization"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
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
    def sync_from_stripe(self, request: HttpRequest, queryset) -> None:
        if not stripe_configured():
            self.message_user(request, "Stripe is not configured.", messages.ERROR)
            return
        for subscription in queryset:
            subscription_sync(stripe_subscription_id=subscription.stripe_subscription_id)
        self.message_user(request, f"Synced {queryset.count()} subscription(s).")


@admin.register(PlanOverride)
class PlanOverrideAdmin(admin.ModelAdmin):
    list_display = ["organization", "plan", "until", "reason", "granted_by", "created_at"]
    list_filter = ["plan"]
    search_fields = ["organization__name", "organization__slug", "reason"]
    raw_id_fields = ["organization"]
    readonly_fields = ["granted_by", "created_at"]
    fields = ["organization", "plan", "until", "reason", "granted_by", "created_at"]

    def save_model(self, request: HttpRequest, obj: PlanOverride, form, change: bool) -> None:
        if not change:
            obj.granted_by = request.user  # who granted it is recorded, not typed in
        super().save_model(request, obj, form, change)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
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
    def reprocess(self, request: HttpRequest, queryset) -> None:
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
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = ["organization", "date", "api_requests", "stream_messages", "updated_at"]
    list_filter = ["date"]
    search_fields = ["organization__name", "organization__slug"]
    date_hierarchy = "date"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
