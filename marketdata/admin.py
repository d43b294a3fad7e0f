"""Operators' view of market data. The trade table is huge: read-only, no full counts,
and time navigation that never asks the database for the whole table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from marketdata.models import BookSnapshot, Candle1m, Exchange, Instrument, Ticker, Trade
from quantsaas.admin_generics import ModelAdmin


class ReadOnlyAdmin(ModelAdmin[Any]):
    """Market data is written by feeds and backfill only, never by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecentTimeFilter(admin.SimpleListFilter):
    """Date navigation for billion-row tables.

    Django's date_hierarchy computes its choices with MIN/MAX and SELECT DISTINCT over
    the table, full scans at this size. These windows are computed from the clock
    instead, and each one is a range scan the BRIN index on ts answers cheaply.
    """

    title = "time"
    parameter_name = "window"
    WINDOWS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(ts__gte=timezone.now() - window[1])


@admin.register(Exchange)
class ExchangeAdmin(ModelAdmin[Exchange]):
    list_display = ["id", "name", "enabled"]
    list_editable = ["enabled"]
    search_fields = ["id", "name"]


@admin.register(Instrument)
class InstrumentAdmin(ModelAdmin[Instrument]):
    list_display = ["symbol", "exchange", "ccxt_symbol", "active", "feed_shard"]
    list_filter = ["exchange", "active", "feed_shard"]
    list_editable = ["active", "feed_shard"]
    search_fields = ["symbol", "ccxt_symbol", "base", "quote"]


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = ["ts", "instrument", "trade_id", "side", "price", "size", "received_ts"]
    list_filter = [RecentTimeFilter, "instrument"]
    list_select_related = ["instrument"]
    # Exact lookups hit the unique (instrument, trade_id) index; no LIKE scans of billions.
    search_fields = ["=trade_id"]
    # COUNT(*) over billions of rows would take minutes; show "more" instead.
    show_full_result_count = False
    list_per_page = 100
    ordering = ["-ts"]


@admin.register(Candle1m)
class Candle1mAdmin(ReadOnlyAdmin):
    list_display = ["ts", "instrument", "open", "high", "low", "close", "volume", "is_final"]
    list_filter = [RecentTimeFilter, "instrument", "is_final"]
    list_select_related = ["instrument"]
    show_full_result_count = False
    ordering = ["-ts"]


@admin.register(BookSnapshot)
class BookSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["ts", "instrument"]
    list_filter = [RecentTimeFilter, "instrument"]
    list_select_related = ["instrument"]
    show_full_result_count = False
    ordering = ["-ts"]


@admin.register(Ticker)
class TickerAdmin(ReadOnlyAdmin):
    list_display = ["instrument", "ts", "last", "bid", "ask", "volume_24h"]
    list_select_related = ["instrument"]
