"""Operators' view of backtest jobs and the stored live analytics (read-only: the jobs'
rows are written by the worker, the analytics by the feed runner)."""

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from analytics.models import Backtest, OfiSecond, VpinBucket

if TYPE_CHECKING:
    # ModelAdmin is generic in django-stubs only; subscripting it at runtime would need
    # django_stubs_ext's monkeypatch, a development-only package.
    _ModelAdmin = admin.ModelAdmin[Model]
else:
    _ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(_ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Backtest)
class BacktestAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "strategy", "status", "progress", "created_at")
    list_filter = ("status", "strategy")
    search_fields = ("organization__name", "created_by__email")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"


@admin.register(OfiSecond)
class OfiSecondAdmin(ReadOnlyAdmin):
    list_display = ("instrument", "ts", "ofi", "updates")
    list_filter = ("instrument__exchange",)
    list_select_related = ("instrument",)
    show_full_result_count = False  # counting a large table on every page view is slow


@admin.register(VpinBucket)
class VpinBucketAdmin(ReadOnlyAdmin):
    list_display = ("instrument", "ts", "bucket_volume", "buy_volume", "sell_volume", "vpin")
    list_filter = ("instrument__exchange",)
    list_select_related = ("instrument",)
    show_full_result_count = False
