"""Output shapes, for the OpenAPI document only (views build rows directly for speed)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class FeedStatus(serializers.Serializer[dict[str, Any]]):
    state = serializers.CharField(help_text="connected, disconnected or unknown")
    connected = serializers.BooleanField(allow_null=True)
    last_message_age_ms = serializers.IntegerField(allow_null=True)
    messages_per_second = serializers.FloatField(allow_null=True)
    gaps_repaired = serializers.IntegerField(allow_null=True)


class ExchangeOut(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    status = FeedStatus()


class InstrumentOut(serializers.Serializer[dict[str, Any]]):
    exchange = serializers.CharField()
    symbol = serializers.CharField(help_text="BASE-QUOTE")
    ccxt_symbol = serializers.CharField()
    base = serializers.CharField()
    quote = serializers.CharField()
    price_precision = serializers.FloatField(help_text="Price tick size.")
    size_precision = serializers.FloatField(help_text="Size step.")
    active = serializers.BooleanField()


class TickerOut(serializers.Serializer[dict[str, Any]]):
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    ts = serializers.IntegerField()
    last = serializers.FloatField()
    bid = serializers.FloatField(allow_null=True)
    ask = serializers.FloatField(allow_null=True)
    bid_size = serializers.FloatField(allow_null=True)
    ask_size = serializers.FloatField(allow_null=True)
    high_24h = serializers.FloatField(allow_null=True)
    low_24h = serializers.FloatField(allow_null=True)
    volume_24h = serializers.FloatField(allow_null=True)
    quote_volume_24h = serializers.FloatField(allow_null=True)
    change_24h = serializers.FloatField(allow_null=True)
    change_pct_24h = serializers.FloatField(allow_null=True, help_text="Decimal: 0.01 = 1 %.")


class TradeOut(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField(help_text="The exchange's trade id.")
    ts = serializers.IntegerField()
    price = serializers.FloatField()
    size = serializers.FloatField()
    side = serializers.ChoiceField(choices=["buy", "sell"], help_text="Aggressor side.")


class CandleOut(serializers.Serializer[dict[str, Any]]):
    ts = serializers.IntegerField(help_text="Bucket open time, UTC-aligned.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    buy_volume = serializers.FloatField()
    trades = serializers.IntegerField()
    final = serializers.BooleanField(help_text="False while the bucket can still change.")


class BookOut(serializers.Serializer[dict[str, Any]]):
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    ts = serializers.IntegerField()
    bids = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    asks = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))


def _page(
    name: str, item: type[serializers.Serializer[dict[str, Any]]]
) -> type[serializers.Serializer[dict[str, Any]]]:
    return type(
        name,
        (serializers.Serializer,),
        {
            "data": item(many=True),
            "next": serializers.URLField(allow_null=True),
        },
    )


ExchangeList = _page("ExchangeList", ExchangeOut)
InstrumentList = _page("InstrumentList", InstrumentOut)
TradeList = _page("TradeList", TradeOut)
CandleList = _page("CandleList", CandleOut)


class ConsolidatedBboOut(serializers.Serializer[dict[str, Any]]):
    pair = serializers.CharField(help_text="The consolidated pair, e.g. BTC-USD.")
    ts = serializers.IntegerField(help_text="When this state was computed (ms).")
    bid = serializers.FloatField(allow_null=True)
    bid_size = serializers.FloatField(allow_null=True)
    bid_venue = serializers.CharField(allow_null=True, help_text="The exchange with the best bid.")
    ask = serializers.FloatField(allow_null=True)
    ask_size = serializers.FloatField(allow_null=True)
    ask_venue = serializers.CharField(allow_null=True, help_text="The exchange with the best ask.")
    venues = serializers.ListField(
        child=serializers.CharField(),
        help_text="The venues included: connected, with a book younger than the staleness limit.",
    )


class ConsolidatedBookOut(serializers.Serializer[dict[str, Any]]):
    pair = serializers.CharField()
    ts = serializers.IntegerField()
    bids = serializers.ListField(
        child=serializers.ListField(),
        help_text="[price, total size, {venue: size}], best first.",
    )
    asks = serializers.ListField(
        child=serializers.ListField(),
        help_text="[price, total size, {venue: size}], best first.",
    )
    venues = serializers.ListField(child=serializers.CharField())
