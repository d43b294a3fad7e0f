"""`GET /api/v1/usage`: this period's usage against the plan's limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from billing.selectors import usage_summary


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class PlanOutput(serializers.Serializer[dict[str, Any]]):
    code = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField(help_text="Subscription status the plan comes from.")


class LimitsOutput(serializers.Serializer[dict[str, Any]]):
    requests_per_minute = serializers.IntegerField()
    ws_connections = serializers.IntegerField()
    ws_subscriptions = serializers.IntegerField()
    stream_delay_seconds = serializers.IntegerField()
    history_days = serializers.IntegerField(allow_null=True, help_text="null = unlimited")
    api_keys = serializers.IntegerField()
    analytics = serializers.BooleanField()
    backtests_per_day = serializers.IntegerField()


class UsageCountsOutput(serializers.Serializer[dict[str, Any]]):
    api_requests = serializers.IntegerField()
    stream_messages = serializers.IntegerField()
    api_requests_today = serializers.IntegerField()
    stream_messages_today = serializers.IntegerField()
    api_keys_active = serializers.IntegerField()


class UsageDayOutput(serializers.Serializer[dict[str, Any]]):
    date = serializers.DateField()
    api_requests = serializers.IntegerField()
    stream_messages = serializers.IntegerField()


class UsageOutput(serializers.Serializer[dict[str, Any]]):
    plan = PlanOutput()
    limits = LimitsOutput()
    period_start = serializers.IntegerField(help_text="Milliseconds since the epoch (UTC).")
    period_end = serializers.IntegerField(help_text="Milliseconds since the epoch (UTC).")
    usage = UsageCountsOutput()
    days = UsageDayOutput(many=True)


class UsageView(OrganizationAPIView):
    @extend_schema(
        responses=UsageOutput,
        summary="Usage this period",
        description=(
            "API requests and stream messages this billing period (the calendar month "
            "without a subscription), per day, next to the plan's limits. Today's figures "
            "are live; earlier days are rolled up every few minutes."
        ),
    )
    def get(self, request: Request) -> Response:
        summary = usage_summary(organization=self.organization)
        ent = summary.entitlements
        # .keys(): drf-stubs type iterating a serializer's fields as the Field objects.
        body = {
            "plan": {"code": ent.plan, "name": ent.plan_name, "status": ent.status},
            "limits": {name: getattr(ent, name) for name in LimitsOutput().fields.keys()},  # noqa: SIM118
            "period_start": _ms(summary.period_start),
            "period_end": _ms(summary.period_end),
            "usage": {name: getattr(summary, name) for name in UsageCountsOutput().fields.keys()},  # noqa: SIM118
            "days": summary.days,
        }
        return Response(UsageOutput(body).data)
