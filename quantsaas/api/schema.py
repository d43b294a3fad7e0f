"""OpenAPI pieces shared by every endpoint: the one error shape."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
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


def response_headers_hook(result: dict, generator, request, public) -> dict:
    """Document the headers our views add to answers, which views cannot declare.

    Every authenticated answer carries the rate-limit headers (quantsaas.api.base);
    market endpoints carry `X-Data-Delay` when the plan is delayed (marketdata.api.delay).
    """
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
