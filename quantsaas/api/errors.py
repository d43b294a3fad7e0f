"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Customers write one error path in their clients, so every failure, from a bad
field to a missing route, answers in this shape with the codes of API.md.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
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


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten(detail: Any) -> Any:
    """DRF's ErrorDetail lists become plain strings keyed by field."""
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _message_and_details(exc: exceptions.APIException, code: str) -> tuple[str, dict]:
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
        return "Too many requests for your plan; retry later.", {"retry_after": exc.wait}
    return str(exc.detail), {}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django's 500 handling log it

    code = next((c for cls, c in _CODES if isinstance(exc, cls)), exc.default_code)
    message, details = _message_and_details(exc, code)
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(int(exc.wait + 0.999))
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        status_code = status.HTTP_401_UNAUTHORIZED
    else:
        status_code = exc.status_code
    set_rollback()
    return Response(error_body(code, message, details), status=status_code, headers=headers)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception | None = None):
    """404 for routes no view matched: JSON under /api/, the site's page elsewhere."""
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found as html_404

    return html_404(request, exception)


def server_error(request: HttpRequest):
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "Something went wrong on our side; it has been logged."),
            status=500,
        )
    from django.views.defaults import server_error as html_500

    return html_500(request)
