"""Operators see rules, firings and deliveries, picking related objects by name (autocomplete)
rather than by raw id; the webhook secret is never shown here."""

from django.contrib import admin

from alerts.models import AlertDelivery, AlertFiring, AlertRule
from quantsaas.admin_generics import ModelAdmin


@admin.register(AlertRule)
class AlertRuleAdmin(ModelAdmin[AlertRule]):
    list_display = ["__str__", "organization", "kind", "exchange", "instrument", "enabled"]
    list_filter = ["kind", "enabled", "exchange"]
    search_fields = ["name", "organization__name", "organization__slug"]
    autocomplete_fields = ["organization", "instrument", "created_by"]
    readonly_fields = ["created_at", "updated_at", "last_fired_at"]


@admin.register(AlertFiring)
class AlertFiringAdmin(ModelAdmin[AlertFiring]):
    list_display = ["event_id", "organization", "rule", "fired_at", "tick_ts"]
    search_fields = ["event_id", "organization__name"]
    autocomplete_fields = ["organization", "rule"]
    readonly_fields = ["event_id", "tick_ts", "fired_at", "payload"]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ModelAdmin[AlertDelivery]):
    list_display = ["firing", "organization", "channel", "status", "attempts", "created_at"]
    list_filter = ["channel", "status"]
    search_fields = ["firing__event_id", "target", "organization__name"]
    autocomplete_fields = ["organization", "firing"]
