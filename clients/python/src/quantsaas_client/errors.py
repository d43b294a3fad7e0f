"""Typed exceptions: the API's one error shape, mapped by its ``code`` first.

Every REST error body is ``{"error": {"code", "message", "details"}}``; catching
``PlanRequired`` or ``RateLimited`` is how a program reacts to a specific
condition without parsing text. The stream's fatal close codes raise too,
since reconnecting cannot fix a bad key or a plan that forbids the channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class QuantSaaSError(Exception):
    """Base class of everything this package raises."""


class TransportError(QuantSaaSError):
    """The server could not be reached (after the retries the policy allows)."""


class APIError(QuantSaaSError):
    """An error answer from the REST API."""

    status: int
    code: str

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.message = message
        self.status = status
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequest(APIError):
    """400 ``invalid``: ``details`` names the fields."""


class AuthenticationFailed(APIError):
    """401: missing, wrong, revoked or expired key."""


class PermissionDenied(APIError):
    """403 ``permission_denied``."""


class PlanRequired(PermissionDenied):
    """403 ``plan_required``: ``details`` names the plan that allows it."""


class NotFound(APIError):
    """404 (also another organization's objects)."""


class RateLimited(APIError):
    """429 after the retries: ``retry_after`` is how long the server asked to wait."""

    @property
    def retry_after(self) -> float | None:
        from quantsaas_client._retry import server_wait

        return server_wait(self.headers)


class ServiceUnavailable(APIError):
    """503 after the retries."""


class ServerError(APIError):
    """Any other 5xx."""


_BY_CODE: dict[str, type[APIError]] = {
    "invalid": InvalidRequest,
    "authentication_failed": AuthenticationFailed,
    "not_authenticated": AuthenticationFailed,
    "permission_denied": PermissionDenied,
    "plan_required": PlanRequired,
    "not_found": NotFound,
    "rate_limited": RateLimited,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error(status: int, body: Any, headers: Mapping[str, str] | None = None) -> APIError:
    """The typed exception for an error answer (any body: proxies answer HTML too)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        message = str(error.get("message") or "")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    else:
        code, message, details = f"http_{status}", f"HTTP {status}", {}
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(message, status=status, code=code, details=details, headers=headers)


class StreamError(QuantSaaSError):
    """The stream cannot go on."""


class StreamClosed(StreamError):
    """The server closed the stream for a reason a reconnect cannot fix."""

    def __init__(
        self, code: int | None, reason: str = "", error: Mapping[str, Any] | None = None
    ) -> None:
        text = f"stream closed with {code}"
        if error:
            text += f": {error.get('code')}: {error.get('message')}"
        elif reason:
            text += f": {reason}"
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.error = dict(error or {})


class StreamAuthenticationFailed(StreamClosed):
    """4001: bad, revoked or expired key, or no authentication in time."""


class StreamPlanRequired(StreamClosed):
    """4003: the plan does not allow a channel (or no longer does)."""
