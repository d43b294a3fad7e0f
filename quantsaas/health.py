"""Liveness and readiness, answered before any other middleware.

`/healthz` proves the process serves requests and touches nothing else, so an
orchestrator never restarts a healthy web process because Postgres blinked.
`/readyz` checks every dependency a request may need and answers 503 naming
the one that failed, so a load balancer stops sending traffic.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0  # per check, and for the whole report: checks run in parallel
CACHE_SECONDS = 2.0  # a load balancer polling every second costs one check round per 2 s
TOKEN_HEADER = "HTTP_X_READYZ_TOKEN"  # noqa: S105 (a header name, not a secret)

Check = Callable[[], dict[str, Any]]
_extra_checks: dict[str, Check] = {}
# Checks run here, so a hung dependency ties up a pool thread, never the request. Each
# check also has its own socket timeouts, so a thread is not held for long.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")
_cache_lock = threading.Lock()
_cached: tuple[float, bool, dict[str, Any]] | None = None


def readiness_check_register(name: str, check: Check) -> None:
    """Let other apps (the feed runner's health, for one) add to /readyz."""
    _extra_checks[name] = check


def readiness_cache_clear() -> None:
    global _cached
    with _cache_lock:
        _cached = None


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this pool thread's connection goes back to the pool
    return {"ok": True}


def _redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "mode": "embedded"}
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True}


def _broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return {"ok": True, "mode": "embedded"}
    from kombu import Connection

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)  # type: ignore[arg-type]  # kombu takes seconds as a float; the stubs say int
    return {"ok": True}


def _run(check: Check) -> dict[str, Any]:
    try:
        return check()
    except Exception as exc:  # a failing dependency is a report, not a crash
        # The exception's text can hold host names or credentials: logged, never served.
        logger.warning("readiness check failed", exc_info=True)
        return {"ok": False, "error": type(exc).__name__}


def readiness_report() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check in parallel, each within CHECK_TIMEOUT_SECONDS."""
    checks: dict[str, Check] = {
        "database": _database,
        "redis": _redis,
        "broker": _broker,
        **_extra_checks,
    }
    started = time.perf_counter()
    futures = {name: _executor.submit(_run, check) for name, check in checks.items()}
    deadline = started + CHECK_TIMEOUT_SECONDS
    report: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        try:
            result = future.result(timeout=max(0.0, deadline - time.perf_counter()))
        except FutureTimeout:
            result = {"ok": False, "error": "timeout"}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        report[name] = result
    return all(item["ok"] for item in report.values()), report


def readiness_cached() -> tuple[bool, dict[str, dict[str, Any]]]:
    """The report, at most CACHE_SECONDS old; one check round at a time per process."""
    global _cached
    with _cache_lock:
        now = time.monotonic()
        if _cached is None or now - _cached[0] >= CACHE_SECONDS:
            ready, report = readiness_report()
            _cached = (time.monotonic(), ready, report)
        return _cached[1], _cached[2]


def _may_see_details(request: HttpRequest) -> bool:
    """The per-check report names our dependencies and their latency: operators only.

    A token from the environment (READYZ_TOKEN, sent as X-Readyz-Token) for monitoring,
    or a staff session. Anonymous callers (a load balancer) get the status alone.
    """
    token = getattr(settings, "READYZ_TOKEN", "")
    sent = request.META.get(TOKEN_HEADER, "")
    if token and sent and hmac.compare_digest(token.encode(), sent.encode()):
        return True
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return False
    try:  # runs before the session middleware; any failure means "not staff"
        from importlib import import_module

        from django.contrib.auth import get_user_model

        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user_id = session.get("_auth_user_id")
        return bool(
            user_id
            and get_user_model().objects.filter(pk=user_id, is_staff=True, is_active=True).exists()
        )
    except Exception:
        return False


def liveness(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readiness(request: HttpRequest) -> HttpResponse:
    ready, report = readiness_cached()
    body: dict[str, Any] = {"status": "ok" if ready else "unavailable"}
    if _may_see_details(request):
        body["checks"] = report
    response = JsonResponse(body, status=200 if ready else 503)
    if not ready:
        response["Retry-After"] = "5"
    return response


class HealthCheckMiddleware:
    """Serve the health paths before host validation, sessions or the database."""

    paths = {"/healthz": liveness, "/readyz": readiness}

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.paths.get(request.path_info.rstrip("/"))
        if view is not None and request.method in ("GET", "HEAD"):
            response = view(request)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
