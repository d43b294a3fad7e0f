"""`GET/POST /api/v1/keys` and `DELETE /api/v1/keys/{id}`: the organization's API keys.

Everyone in the organization may list keys; only owners, admins and API keys may
create or revoke them (CanManageForWrites). The raw key appears in exactly one
response, the 201 of its creation; it is never stored, so it cannot be shown again.
"""

from __future__ import annotations

from datetime import datetime

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey
from accounts.selectors import api_key_get, api_keys_for_organization
from accounts.services.api_keys import (
    ApiKeyExpiryInvalid,
    ApiKeyQuotaExceeded,
    api_key_create,
    api_key_expiry_check,
    api_key_revoke,
    api_key_status,
)
from accounts.services.audit import client_ip
from quantsaas.api.base import CanManageForWrites, HasOrganization, OrganizationAPIView
from quantsaas.api.errors import PlanRequired
from quantsaas.api.fields import TimestampField, TimestampMsField
from quantsaas.api.schema import error_response

# --- serializers ------------------------------------------------------------------------


class ApiKeySerializer(serializers.Serializer):
    # The hash is deliberately absent: it is a credential verifier and has no use outside.
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    prefix = serializers.CharField(read_only=True)
    last_four = serializers.CharField(read_only=True)
    masked = serializers.CharField(read_only=True, help_text="Prefix and last four characters.")
    status = serializers.SerializerMethodField()
    created_at = TimestampMsField()
    expires_at = TimestampMsField(allow_null=True)
    revoked_at = TimestampMsField(allow_null=True)
    last_used_at = TimestampMsField(allow_null=True, help_text="Updated at most once a minute.")
    created_by = serializers.SerializerMethodField()

    @extend_schema_field(
        {"type": "string", "enum": ["active", "revoked", "expired"]},
    )
    def get_status(self, api_key: ApiKey) -> str:
        return api_key_status(api_key=api_key)

    @extend_schema_field({"type": "string", "format": "email", "nullable": True})
    def get_created_by(self, api_key: ApiKey) -> str | None:
        return api_key.created_by.email if api_key.created_by else None


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The API key itself. Shown in this response only: store it now."
    )


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    expires_at = TimestampField(as_datetime=True, required=False, allow_null=True, default=None)

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        try:
            api_key_expiry_check(expires_at=value)
        except ApiKeyExpiryInvalid as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class ApiKeyListSerializer(serializers.Serializer):
    data = ApiKeySerializer(many=True)
    next = serializers.URLField(allow_null=True)


# --- views ------------------------------------------------------------------------------


class ApiKeyListCreateView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]

    @extend_schema(
        operation_id="keys_list",
        summary="List the organization's API keys",
        tags=["API keys"],
        responses={200: ApiKeyListSerializer, 401: error_response("Not authenticated.")},
    )
    def get(self, request: Request) -> Response:
        keys = api_keys_for_organization(organization=self.organization)
        # An organization has a handful of keys: one page, so `next` is always null.
        return Response({"data": ApiKeySerializer(keys, many=True).data, "next": None})

    @extend_schema(
        operation_id="keys_create",
        summary="Create an API key (the key is shown once)",
        tags=["API keys"],
        request=ApiKeyCreateSerializer,
        responses={
            201: ApiKeyCreatedSerializer,
            400: error_response("Invalid fields (`details.fields` names them)."),
            401: error_response("Not authenticated."),
            403: error_response(
                "`permission_denied` for members; `plan_required` at the key limit."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        caller = self.caller
        try:
            created = api_key_create(
                organization=self.organization,
                created_by=None if caller.api_key else request.user,
                actor_api_key=caller.api_key,
                name=payload.validated_data["name"],
                expires_at=payload.validated_data["expires_at"],
                ip_address=client_ip(request),
            )
        except ApiKeyQuotaExceeded as exc:
            raise PlanRequired(str(exc), plans=exc.plans) from exc
        body = ApiKeyCreatedSerializer(created.api_key).data
        body["key"] = created.raw_key
        # The one response that carries the key must not linger in any cache.
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key",
        description="Takes effect at once. Revoking a revoked key succeeds and changes nothing.",
        tags=["API keys"],
        responses={
            204: OpenApiResponse(description="Revoked."),
            401: error_response("Not authenticated."),
            403: error_response("Only owners and admins can revoke keys."),
            404: error_response("No such key in this organization."),
        },
    )
    def delete(self, request: Request, api_key_id: int) -> Response:
        # Looked up inside the caller's organization only: another tenant's id is
        # indistinguishable from one that does not exist.
        api_key = api_key_get(organization=self.organization, api_key_id=api_key_id)
        if api_key is None:
            raise NotFound("No such API key.")
        caller = self.caller
        api_key_revoke(
            api_key=api_key,
            actor=None if caller.api_key else request.user,
            actor_api_key=caller.api_key,
            ip_address=client_ip(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
