"""`GET/POST /api/v1/keys` and `DELETE /api/v1/keys/{id}`: the organization's API keys.

Everyone in the organization may list keys; only owners, admins and API keys with
the `admin` scope may create or revoke them (CanManageForWrites, api_key_write_scope).
The raw key appears in exactly one response, the 201 of its creation; it is never
stored, so it cannot be shown again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import CanManageForWrites, HasOrganization, OrganizationAPIView
from accounts.models import ApiKey, ApiKeyScope
from accounts.selectors import api_key_get, api_keys_for_organization
from accounts.services.api_keys import (
    ApiKeyExpiryInvalid,
    ApiKeyQuotaExceeded,
    ApiKeyScopeNotHeld,
    ApiKeyScopesInvalid,
    api_key_create,
    api_key_expiry_check,
    api_key_revoke,
    api_key_status,
)
from accounts.services.audit import client_ip
from quantsaas.api.errors import PlanRequired
from quantsaas.api.fields import TimestampField, TimestampMsField
from quantsaas.api.schema import error_response

# --- serializers ------------------------------------------------------------------------


class ApiKeySerializer(serializers.Serializer[ApiKey]):
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
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices),
        read_only=True,
        help_text="What the key may do: `read`, `trade-analytics`, `admin`.",
    )
    created_by_key = serializers.IntegerField(
        source="created_by_key_id",
        read_only=True,
        allow_null=True,
        help_text="The id of the API key that created this one, if a program did.",
    )

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


class ApiKeyCreateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    expires_at = TimestampField(as_datetime=True, required=False, allow_null=True, default=None)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices),
        required=False,
        allow_empty=False,
        max_length=len(ApiKeyScope.values),
        default=None,
        help_text='Default `["read"]`. A key creating a key can grant only scopes it holds.',
    )

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        try:
            api_key_expiry_check(expires_at=value)
        except ApiKeyExpiryInvalid as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class RevokeQuerySerializer(serializers.Serializer[dict[str, Any]]):
    include_created = serializers.BooleanField(required=False, default=False)


class ApiKeyListSerializer(serializers.Serializer[dict[str, Any]]):
    # A field named like Serializer.data: DRF's metaclass moves it into _declared_fields.
    data = ApiKeySerializer(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)


# --- views ------------------------------------------------------------------------------


class ApiKeyListCreateView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]
    api_key_write_scope = ApiKeyScope.ADMIN

    @extend_schema(
        operation_id="keys_list",
        summary="List the organization's API keys",
        tags=["API keys"],
        responses={200: ApiKeyListSerializer, 401: error_response("Not authenticated.")},
    )
    def get(self, request: Request) -> Response:
        keys = api_keys_for_organization(organization=self.organization)
        # An organization has a handful of keys: one page, so `next` is always null.
        # drf-stubs type the instance as one object even with many=True.
        return Response({"data": ApiKeySerializer(keys, many=True).data, "next": None})  # type: ignore[arg-type]

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
                "`permission_denied` for members, for keys without the `admin` scope and "
                "for a key granting a scope it lacks; `plan_required` at the key limit."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        caller = self.verified_caller
        try:
            created = api_key_create(
                organization=self.organization,
                created_by=caller.user,
                actor_api_key=caller.api_key,
                name=payload.validated_data["name"],
                expires_at=payload.validated_data["expires_at"],
                scopes=payload.validated_data["scopes"],
                ip_address=client_ip(request),
            )
        except ApiKeyQuotaExceeded as exc:
            raise PlanRequired(str(exc), plans=exc.plans) from exc
        except ApiKeyScopesInvalid as exc:
            raise serializers.ValidationError({"scopes": [str(exc)]}) from exc
        except ApiKeyScopeNotHeld as exc:
            raise PermissionDenied(str(exc)) from exc
        body = ApiKeyCreatedSerializer(created.api_key).data
        body["key"] = created.raw_key
        # The one response that carries the key must not linger in any cache.
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailView(OrganizationAPIView):
    permission_classes = [HasOrganization, CanManageForWrites]
    api_key_write_scope = ApiKeyScope.ADMIN

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key",
        description=(
            "Takes effect at once. Revoking a revoked key succeeds and changes nothing. "
            "With `include_created=true` the keys this key created (and theirs) are "
            "revoked too."
        ),
        tags=["API keys"],
        parameters=[
            OpenApiParameter(
                "include_created",
                bool,
                description="Also revoke every key this key created, directly or not.",
            )
        ],
        responses={
            204: OpenApiResponse(description="Revoked."),
            400: error_response("`include_created` is not a boolean."),
            401: error_response("Not authenticated."),
            403: error_response(
                "Only owners, admins and keys with the `admin` scope can revoke keys."
            ),
            404: error_response("No such key in this organization."),
        },
    )
    def delete(self, request: Request, api_key_id: int) -> Response:
        # Looked up inside the caller's organization only: another tenant's id is
        # indistinguishable from one that does not exist.
        api_key = api_key_get(organization=self.organization, api_key_id=api_key_id)
        if api_key is None:
            raise NotFound("No such API key.")
        flags = RevokeQuerySerializer(data=request.query_params)
        flags.is_valid(raise_exception=True)
        caller = self.verified_caller
        api_key_revoke(
            api_key=api_key,
            actor=caller.user,
            actor_api_key=caller.api_key,
            ip_address=client_ip(request),
            include_created=flags.validated_data["include_created"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
