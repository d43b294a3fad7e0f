"""One log format for every process, and the request id that ties a request's lines.

``LOG_FORMAT=json`` (docs/operations.md) makes web, worker, beat and feed write one JSON
object per line with the same keys, so a log pipeline needs one parser. Request lines
carry the request id (the caller's ``X-Request-ID`` when it is sane, else a new one,
echoed in the response), the organization and the API key's prefix (never the key).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from celery import Task

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
REQUEST_ID_HEADER = "X-Request-ID"
# What a caller may choose as its id: short, no spaces or control characters, so it is
# safe to log and to echo in a header.
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
request_logger = logging.getLogger("quantsaas.request")


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, process, the request or
    task it belongs to, and whatever ``extra`` the call passed."""

    service = os.environ.get("SERVICE_NAME", "")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if self.service:
            out["service"] = self.service
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            out["request_id"] = request_id
        task = _current_task()
        if task is not None:
            out["task_id"], out["task"] = task.request.id, task.name
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _current_task() -> Task[Any, Any] | None:
    try:
        from celery import current_task
    except ImportError:
        return None
    task = current_task
    return task if task and getattr(task.request, "id", None) else None


class RequestWithId(HttpRequest):
    """A request as the logging middleware leaves it (a type only)."""

    request_id: str


def request_id_from(request: HttpRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex


def _caller(request: HttpRequest) -> tuple[int | None, str | None]:
    """(organization id, API key prefix) of the request, once authentication ran: DRF puts
    a key's principal on the request, the session middleware the current organization."""
    user = getattr(request, "user", None)
    api_key = getattr(user, "api_key", None)
    if api_key is not None:
        return api_key.organization_id, api_key.prefix
    organization = getattr(request, "organization", None)
    return (organization.pk if organization is not None else None), None


class RequestLogMiddleware:
    """Sets the request id for every line the request logs, echoes it, and logs one line
    per request (route, status, duration, organization, API key prefix)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: RequestWithId) -> HttpResponse:
        request_id = request_id_from(request)
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            organization_id, key_prefix = _caller(request)
            request_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "organization_id": organization_id,
                    "api_key_prefix": key_prefix,
                },
            )
            return response
        finally:
            request_id_var.reset(token)


def logging_config(*, json_format: bool, level: str) -> dict[str, Any]:
    """The LOGGING setting: plain lines for people, JSON lines for a log pipeline."""
    formatter = (
        {"()": "quantsaas.logs.JsonFormatter"}
        if json_format
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
