"""API key authentication for DRF: `Authorization: Bearer qs_...` or `X-API-Key: qs_...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.api_keys import KEY_PREFIX
from accounts.models import ApiKey, Organization
from accounts.services.api_keys import ApiKeyError, api_key_authenticate

if TYPE_CHECKING:  # a runtime import would cycle through DRF's settings back to here
    from drf_spectacular.openapi import AutoSchema


class ApiKeyPrincipal:
    """The caller of a key-authenticated request: the key's organization, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.organization: Organization = api_key.organization

    def __str__(self) -> str:
        return f"API key {self.api_key.masked}"


def raw_key_from_headers(headers: dict[str, str] | object) -> str | None:
    """The presented key, from `Authorization: Bearer` or `X-API-Key`, else None."""
    authorization = headers.get("Authorization", "")  # type: ignore[union-attr]
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    header_key = headers.get("X-API-Key", "")  # type: ignore[union-attr]
    return header_key.strip() or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        raw_key = raw_key_from_headers(request.headers)
        if raw_key is None:
            return None
        if not raw_key.startswith(KEY_PREFIX):
            raise exceptions.AuthenticationFailed("API keys start with 'qs_'.")
        try:
            api_key = api_key_authenticate(raw_key=raw_key)
        except ApiKeyError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated API calls.
        return 'Bearer realm="api"'


SCOPES_NOTE = (
    "A key holds scopes: `read` (market data, analytics, options, usage, the key list), "
    "`trade-analytics` (backtests), `admin` (create and revoke keys). Each operation "
    "names the scope it needs (`x-api-key-scope`); new keys read only unless asked."
)


# drf-spectacular leaves the extension registry's __init_subclass__ unannotated.
class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Shows both header forms on the API docs page."""

    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = ["BearerApiKey", "HeaderApiKey"]

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict[str, list[str]]]:
        # Either header alone authenticates: separate requirements mean OR in OpenAPI.
        return [{"BearerApiKey": []}, {"HeaderApiKey": []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, str]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "qs_<key>",
                "description": (
                    "An API key from the API keys page: `Authorization: Bearer qs_...`. "
                    + SCOPES_NOTE
                ),
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "The same API key in the `X-API-Key` header. " + SCOPES_NOTE,
            },
        ]
