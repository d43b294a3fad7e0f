"""Liveness and readiness, answered before any other middleware.

`/healthz` proves the process serves requests and touches nothing else, so an
orchestrator never restarts a healthy web process because Postgres blinked.
`/readyz` checks every dependency a request may need and answers 503 naming
the one that failed, so a load balancer stops sending traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

CHECK_TIMEOUT_SECONDS = 2.0

Check = Callable[[], dict]
_extra_checks: dict[str, Check] = {}


def readiness_check_register(name: str, check: Check) -> None:
    """Let other apps (the feed runner's health, for one) add to /readyz."""
    _extra_checks[name] = check


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _redis() -> dict:
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


def _broker() -> dict:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return {"ok": True, "mode": "embedded"}
    from kombu import Connection

    with Connection(url, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
    return {"ok": True}


def readiness_report() -> tuple[bool, dict[str, dict]]:
    checks: dict[str, Check] = {
        "database": _database,
        "redis": _redis,
        "broker": _broker,
        **_extra_checks,
    }
    report: dict[str, dict] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # a failing dependency is a report, not a crash
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        report[name] = result
    return all(item["ok"] for item in report.values()), report


def liveness(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readiness(request: HttpRequest) -> HttpResponse:
    ready, report = readiness_report()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": report},
        status=200 if ready else 503,
    )


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
