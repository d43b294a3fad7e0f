"""`/api/v1/alerts`: the organization's alert rules, their delivery log, the webhook secret.

Every member and every key with `read` may list; creating, changing and deleting rules
needs an owner or admin (or a key with `trade-analytics`); the webhook secret, which
forges our signatures, needs an owner or admin (or a key with `admin`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import CanManageForWrites, HasOrganization, OrganizationAPIView
from accounts.models import ApiKeyScope
from accounts.services.audit import client_ip
from alerts import selectors, services
from alerts.models import AlertDelivery, AlertKind, AlertRule, Direction
from quantsaas.api.errors import PlanRequired
from quantsaas.api.fields import TimestampMsField
from quantsaas.api.schema import error_response

# --- serializers ------------------------------------------------------------------------


class AlertRuleSerializer(serializers.Serializer[AlertRule]):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=AlertKind.choices)
    exchange = serializers.CharField(source="exchange_id")
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    direction = serializers.CharField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    window_seconds = serializers.IntegerField()
    cooldown_seconds = serializers.IntegerField()
    enabled = serializers.BooleanField()
    email = serializers.CharField()
    webhook_url = serializers.CharField()
    created_at = TimestampMsField()
    updated_at = TimestampMsField()
    last_fired_at = TimestampMsField(allow_null=True)

    def to_representation(self, rule: AlertRule) -> dict[str, Any]:
        data = super().to_representation(rule)
        data["direction"] = data["direction"] or None
        return data


class AlertRuleInSerializer(serializers.Serializer[dict[str, Any]]):
    """Types only; what a kind needs is checked by alerts.services.alert_rule_clean."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=AlertKind.choices, required=False)
    exchange = serializers.CharField(max_length=32, required=False)
    symbol = serializers.CharField(max_length=32, required=False, allow_null=True)
    direction = serializers.ChoiceField(choices=Direction.choices, required=False, allow_null=True)
    threshold = serializers.FloatField(required=False, allow_null=True)
    window_seconds = serializers.IntegerField(required=False, min_value=0)
    cooldown_seconds = serializers.IntegerField(required=False, min_value=0)
    enabled = serializers.BooleanField(required=False)
    email = serializers.EmailField(required=False, allow_blank=True)
    webhook_url = serializers.URLField(max_length=500, required=False, allow_blank=True)


class AlertRuleListSerializer(serializers.Serializer[dict[str, Any]]):
    # A field named like Serializer.data: DRF's metaclass moves it into _declared_fields.
    data = AlertRuleSerializer(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)


class AlertDeliverySerializer(serializers.Serializer[AlertDelivery]):
    id = serializers.IntegerField()
    event_id = serializers.CharField(source="firing.event_id")
    rule_id = serializers.IntegerField(source="firing.rule_id", allow_null=True)
    channel = serializers.CharField()
    target = serializers.CharField()
    status = serializers.CharField(help_text="pending, retrying, delivered or failed.")
    attempts = serializers.IntegerField()
    response_status = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    tick_ts = serializers.IntegerField(source="firing.tick_ts")
    created_at = TimestampMsField()
    delivered_at = TimestampMsField(allow_null=True)
    next_attempt_at = TimestampMsField(allow_null=True)
    firing = serializers.JSONField(source="firing.payload")


class AlertDeliveryListSerializer(serializers.Serializer[dict[str, Any]]):
    # A field named like Serializer.data: DRF's metaclass moves it into _declared_fields.
    data = AlertDeliverySerializer(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)


class DeliveryQuerySerializer(serializers.Serializer[dict[str, Any]]):
    rule = serializers.IntegerField(required=False, min_value=1)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)


class WebhookSecretSerializer(serializers.Serializer[dict[str, Any]]):
    secret = serializers.CharField(help_text="HMAC-SHA256 key of `QuantSaaS-Signature`.")


# --- views ------------------------------------------------------------------------------


def _actor(view: OrganizationAPIView, request: Request) -> services.Actor:
    caller = view.verified_caller
    return services.Actor(
        user=caller.user,
        api_key=caller.api_key,
        ip_address=client_ip(request),
    )


def _invalid(exc: services.AlertRuleInvalid) -> serializers.ValidationError:
    return serializers.ValidationError({k: [v] for k, v in exc.errors.items()})


class AlertRuleListView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]
    api_key_write_scope = ApiKeyScope.TRADE_ANALYTICS

    @extend_schema(
        operation_id="alerts_list",
        summary="List the organization's alert rules",
        tags=["Alerts"],
        responses={200: AlertRuleListSerializer, 401: error_response("Not authenticated.")},
    )
    def get(self, request: Request) -> Response:
        rules = selectors.alert_rules_for(organization=self.organization)
        # Bounded by the plan's rule limit: one page, `next` is always null.
        # drf-stubs type the instance as one object even with many=True.
        return Response({"data": AlertRuleSerializer(rules, many=True).data, "next": None})  # type: ignore[arg-type]

    @extend_schema(
        operation_id="alerts_create",
        summary="Create an alert rule",
        description=(
            "Kinds: `price` (threshold is the level), `percent_move` (threshold in percent "
            "over `window_seconds`), `ofi` and `vpin` (threshold on the live series), "
            "`feed_down` (no symbol; fires after the venue is down `window_seconds`, "
            "default 30). `direction` `above` fires on a rise through the threshold, "
            "`below` on a fall. Each firing goes to the organization's `alerts` stream "
            "channel, and to `email` and `webhook_url` when set."
        ),
        tags=["Alerts"],
        request=AlertRuleInSerializer,
        responses={
            201: AlertRuleSerializer,
            400: error_response("Invalid fields (`details.fields` names them)."),
            401: error_response("Not authenticated."),
            403: error_response(
                "`permission_denied` for members and keys without `trade-analytics`; "
                "`plan_required` at the plan's rule limit."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        payload = AlertRuleInSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            rule = services.alert_rule_create(
                organization=self.organization,
                data=payload.validated_data,
                actor=_actor(self, request),
            )
        except services.AlertRuleInvalid as exc:
            raise _invalid(exc) from exc
        except services.AlertRuleQuotaExceeded as exc:
            raise PlanRequired(str(exc), plans=exc.plans) from exc
        return Response(AlertRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]
    api_key_write_scope = ApiKeyScope.TRADE_ANALYTICS

    def _rule(self, rule_id: int) -> AlertRule:
        # Looked up inside the caller's organization only: another tenant's id is a 404.
        rule = selectors.alert_rule_get(organization=self.organization, rule_id=rule_id)
        if rule is None:
            raise NotFound("No such alert rule.")
        return rule

    @extend_schema(
        operation_id="alerts_get",
        summary="An alert rule",
        tags=["Alerts"],
        responses={200: AlertRuleSerializer, 404: error_response("No such rule here.")},
    )
    def get(self, request: Request, rule_id: int) -> Response:
        return Response(AlertRuleSerializer(self._rule(rule_id)).data)

    @extend_schema(
        operation_id="alerts_update",
        summary="Change an alert rule (only the fields sent)",
        tags=["Alerts"],
        request=AlertRuleInSerializer,
        responses={
            200: AlertRuleSerializer,
            400: error_response("Invalid fields (`details.fields` names them)."),
            404: error_response("No such rule here."),
        },
    )
    def patch(self, request: Request, rule_id: int) -> Response:
        rule = self._rule(rule_id)
        payload = AlertRuleInSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        try:
            rule = services.alert_rule_update(
                rule=rule, changes=payload.validated_data, actor=_actor(self, request)
            )
        except services.AlertRuleInvalid as exc:
            raise _invalid(exc) from exc
        return Response(AlertRuleSerializer(rule).data)

    @extend_schema(
        operation_id="alerts_delete",
        summary="Delete an alert rule",
        tags=["Alerts"],
        responses={
            204: OpenApiResponse(description="Deleted; its firings stay in the log."),
            404: error_response("No such rule here."),
        },
    )
    def delete(self, request: Request, rule_id: int) -> Response:
        services.alert_rule_delete(rule=self._rule(rule_id), actor=_actor(self, request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertDeliveryListView(OrganizationAPIView):
    @extend_schema(
        operation_id="alerts_deliveries",
        summary="The delivery log: each email and webhook of recent firings, newest first",
        tags=["Alerts"],
        parameters=[
            OpenApiParameter("rule", int, description="Only this rule's deliveries."),
            OpenApiParameter("limit", int, description="At most this many (1-500, 100)."),
        ],
        responses={200: AlertDeliveryListSerializer, 400: error_response("Bad parameters.")},
    )
    def get(self, request: Request) -> Response:
        query = DeliveryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        deliveries = selectors.alert_deliveries_for(
            organization=self.organization,
            rule_id=query.validated_data.get("rule"),
            limit=query.validated_data["limit"],
        )
        # drf-stubs type the instance as one object even with many=True.
        return Response({"data": AlertDeliverySerializer(deliveries, many=True).data, "next": None})  # type: ignore[arg-type]


class AlertWebhookSecretView(OrganizationAPIView):
    """Reading the secret is a write-class act: whoever holds it can forge our webhooks."""

    permission_classes = [HasOrganization, CanManageForWrites]
    api_key_scope = ApiKeyScope.ADMIN

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)
        if not self.verified_caller.can_manage:
            self.permission_denied(request, message="Only owners and admins can see the secret.")

    @extend_schema(
        operation_id="alerts_webhook_secret",
        summary="The webhook signing secret (created on first read)",
        tags=["Alerts"],
        responses={200: WebhookSecretSerializer, 403: error_response("Owners and admins only.")},
    )
    def get(self, request: Request) -> Response:
        secret = services.alert_webhook_secret_ensure(organization=self.organization)
        return Response({"secret": secret}, headers={"Cache-Control": "no-store"})

    @extend_schema(
        operation_id="alerts_webhook_secret_rotate",
        summary="Replace the webhook signing secret",
        tags=["Alerts"],
        request=None,
        responses={200: WebhookSecretSerializer, 403: error_response("Owners and admins only.")},
    )
    def post(self, request: Request) -> Response:
        secret = services.alert_webhook_secret_rotate(
            organization=self.organization, actor=_actor(self, request)
        )
        return Response({"secret": secret}, headers={"Cache-Control": "no-store"})
