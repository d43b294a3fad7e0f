"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Customers write one error path in their clients, so every failure, from a bad
field to a missing route, answers in this shape with the codes of docs/api.md.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback


class PlanRequired(exceptions.PermissionDenied):
    """The caller's plan does not include this; details name the plans that do."""

    default_code = "plan_required"
    default_detail = "Your plan does not include this."

    def __init__(self, detail: str | None = None, *, plans: list[str] | None = None) -> None:
        super().__init__(detail)
        self.plans = plans or []


_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.ValidationError, "invalid"),
    (exceptions.ParseError, "invalid"),
    (exceptions.NotAuthenticated, "authentication_failed"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (PlanRequired, "plan_required"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


logger = logging.getLogger(__name__)

# A dependency outage (PostgreSQL or Redis unreachable, a pool or statement timeout) is
# not a bug: every endpoint answers it the same way, 503 `unavailable` with Retry-After,
# so clients retry instead of reporting a server error.
OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)
RETRY_AFTER_SECONDS = 5


def outage_body() -> dict[str, Any]:
    return error_body("unavailable", "A service we depend on is unavailable; retry shortly.", {})


def _outage(exc: BaseException | None) -> bool:
    return isinstance(exc, OUTAGES)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten(detail: Any) -> Any:
    """DRF's ErrorDetail lists become plain strings keyed by field."""
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _wait(exc: exceptions.APIException) -> float | None:
    """Seconds to wait, which DRF's Throttled sets (drf-stubs do not declare it)."""
    wait: float | None = getattr(exc, "wait", None)
    return wait


def _message_and_details(exc: exceptions.APIException, code: str) -> tuple[str, dict[str, Any]]:
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            message = non_field[0] if non_field else "Some fields are invalid."
            return message, {"fields": fields} if fields else {}
        if isinstance(detail, list):
            messages = _flatten(detail)
            return (messages[0] if messages else "Invalid request."), {}
    if isinstance(exc, PlanRequired):
        return str(exc.detail), {"plans": exc.plans}
    if isinstance(exc, exceptions.Throttled):
        return "Too many requests for your plan; retry later.", {"retry_after": _wait(exc)}
    details = getattr(exc, "details", None)
    if isinstance(details, dict):  # an exception that names its details
        return str(exc.detail), details
    return str(exc.detail), {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if _outage(exc):
        # One line per refused request: an outage answers many, and the cause is the same.
        logger.warning("503 unavailable: %s: %s", type(exc).__name__, exc)
        set_rollback()
        return Response(
            outage_body(), status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django's 500 handling log it

    code = next((c for cls, c in _CODES if isinstance(exc, cls)), exc.default_code)
    message, details = _message_and_details(exc, code)
    headers: dict[str, str] = {}
    # APIView.handle_exception sets auth_header on 401s; drf-stubs do not declare it.
    auth_header: str | None = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = _wait(exc)
    if wait is not None:
        headers["Retry-After"] = str(int(wait + 0.999))
    status_code: int
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        status_code = status.HTTP_401_UNAUTHORIZED
    else:
        status_code = exc.status_code
    set_rollback()
    return Response(error_body(code, message, details), status=status_code, headers=headers)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for routes no view matched: JSON under /api/, the site's page elsewhere."""
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found as html_404

    return html_404(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this inside its `except` block: the exception is still current. An
    # outage raised before any view (a session or organization lookup in middleware)
    # answers like one raised inside a view.
    if _is_api(request) and _outage(sys.exc_info()[1]):
        response = JsonResponse(outage_body(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "Something went wrong on our side; it has been logged."),
            status=500,
        )
    from django.views.defaults import server_error as html_500

    return html_500(request)
