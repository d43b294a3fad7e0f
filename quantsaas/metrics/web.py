"""Web request metrics and the ``/metrics`` endpoint of a web process.

Requests are labelled by route (the resolved URL name, never the raw path, so ids in
paths cannot blow up the series count), method and status. Each daphne process is its
own scrape target (one process per container); nothing is shared across processes.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from marketdata.streaming.metrics import StreamCollector, hub_flush_counting
from quantsaas.api.errors import error_body

REQUESTS = Counter(
    "quantsaas_http_requests",
    "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "quantsaas_http_request_duration_seconds",
    "Time from the request entering the middleware to its response, by route.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_PATH = "/metrics"
_installed = False


def _stream_collector_install() -> None:
    global _installed
    if not _installed:
        REGISTRY.register(StreamCollector())
        hub_flush_counting()
        _installed = True


def route_of(request: HttpRequest) -> str:
    """The URL name the request resolved to; resolved here when no view ran (a request a
    middleware answered, e.g. a 429); ``static``, or ``unmatched`` for unknown paths."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        if request.path_info.startswith(settings.STATIC_URL):
            return "static"
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.view_name or match.route or "unnamed"


def _token_ok(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant-time compare; an unset token never matches (empty is not a password).
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


def exposition() -> HttpResponse:
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Counts and times every request below the health checks.

    A scraper with ``METRICS_TOKEN`` is answered here, before the host check and the
    session: Prometheus addresses each process by its own address, which ALLOWED_HOSTS
    does not list (the same reason /healthz answers first). Staff sessions get the same
    page through the ``metrics`` view, behind every usual check.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        _stream_collector_install()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == METRICS_PATH and _token_ok(request):
            return exposition()
        started = time.perf_counter()
        response = self.get_response(request)
        route = route_of(request)
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        LATENCY.labels(route, method).observe(time.perf_counter() - started)
        return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` for a staff session (a token is answered by the middleware)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return JsonResponse(error_body("forbidden", "Staff or METRICS_TOKEN only."), status=403)
    return exposition()
