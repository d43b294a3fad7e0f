"""OpenAPI pieces shared by every endpoint: the one error shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.request import Request


class ErrorDetailSerializer(serializers.Serializer[dict[str, Any]]):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    error = ErrorDetailSerializer()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests your plan allows per minute.",
    "RateLimit-Remaining": "Requests left in the current minute.",
    "RateLimit-Reset": "Seconds until the current minute's allowance resets.",
}
_DELAY_HEADER = {
    "X-Data-Delay": (
        "Present when your plan's market data is delayed: how many seconds behind real "
        "time this answer ends."
    ),
}


# Answers any authenticated operation can give, whatever its view declares (docs/api.md):
# the authentication classes, the plan, the rate limiter and the URL resolver produce them.
_COMMON_ERRORS = {
    "401": "authentication_failed: no credentials, or a key that is unknown, revoked or expired.",
    "403": "permission_denied (role or key scope) or plan_required (details name the plans "
    "that allow it).",
    "429": "rate_limited: the plan's requests per minute are used; see Retry-After.",
}
_NOT_FOUND = "not_found: no such object in your organization (or no such exchange/symbol)."
_INVALID = "invalid: a parameter or the body is invalid; details name the fields."
_TOO_LARGE = "too_large: the request body is larger than the API accepts."
_CSV = {
    "schema": {
        "type": "string",
        "description": "CSV (?format=csv or Accept: text/csv): a header row, then one row per "
        "item of `data` with nested fields flattened as `parent.child`; the next page is in "
        "the Link header.",
    }
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def error_responses_hook(
    result: dict[str, Any], generator: SchemaGenerator, request: Request | None, public: bool
) -> dict[str, Any]:
    """Every error an operation can answer is documented, in the one error shape, as JSON
    only (errors are JSON even to a CSV request); CSV success bodies are described as CSV
    text rather than as the JSON object's schema."""
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            documented = dict(_COMMON_ERRORS) if operation.get("security") else {}
            if "{" in path:
                documented["404"] = _NOT_FOUND
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if has_query or "requestBody" in operation:
                documented["400"] = _INVALID
            if "requestBody" in operation:
                documented["413"] = _TOO_LARGE
            for status, description in documented.items():
                responses.setdefault(status, _error(description))
            for status, response in responses.items():
                content = response.get("content", {})
                if "text/csv" not in content:
                    continue
                if status.startswith("2"):
                    content["text/csv"] = dict(_CSV)
                else:
                    del content["text/csv"]
    return result


def response_headers_hook(
    result: dict[str, Any], generator: SchemaGenerator, request: Request | None, public: bool
) -> dict[str, Any]:
    """Document the headers our views add to answers, which views cannot declare.

    Every authenticated answer carries the rate-limit headers (accounts.api.base);
    market endpoints carry `X-Data-Delay` when the plan is delayed (billing.gates).
    Error responses are completed first (error_responses_hook) so they get the headers too.
    """
    result = error_responses_hook(result, generator, request, public)
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or not operation.get("security"):
                continue
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                documented = dict(_RATE_LIMIT_HEADERS)
                if "/markets/" in path and status.startswith("2"):
                    documented.update(_DELAY_HEADER)
                for name, description in documented.items():
                    headers.setdefault(
                        name, {"schema": {"type": "integer"}, "description": description}
                    )
    return result
