"""Site-wide pages that belong to no single app: landing, dashboard, options, backtests.

The pages are thin shells: their data comes from the public REST API and the stream
(the same ones customers program against), loaded by files in static/js/. Views only
hand the page what it cannot ask the API for: the organization's plan and the
stream's address. See docs/web.md.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.decorators import OrganizationRequest, organization_required
from billing.entitlements import entitlements_for
from marketdata import selectors
from quantsaas.asyncapi import CLOSE_CODES, asyncapi_document
from quantsaas.timeutil import now_ms

# The landing page's mini chart shows the built-in simulated market: it is ours, so
# showing it live to anonymous visitors gives away nothing a plan sells.
PREVIEW_EXCHANGE = "sim"
PREVIEW_SYMBOL = "BTC-USD"
PREVIEW_MINUTES = 90
# Anonymous traffic must not turn into database load: the preview is computed at most
# once per this many seconds per process and shared by every visitor (see docs/web.md).
PREVIEW_CACHE_SECONDS = 5
PREVIEW_CACHE_KEY = "web:landing-preview"
STREAM_PATH = "/ws/v1/stream"
# The dashboard chart's intervals: the candle endpoint's, from a minute to a day.
CHART_INTERVALS = ("1m", "5m", "15m", "1h", "4h", "1d")


def market_preview() -> dict[str, Any]:
    """Recent 1-minute candles of the preview market, oldest first, in the REST shape."""
    cached: dict[str, Any] | None = cache.get(PREVIEW_CACHE_KEY)
    if cached is not None:
        return cached
    preview: dict[str, Any] = {"exchange": PREVIEW_EXCHANGE, "symbol": PREVIEW_SYMBOL, "data": []}
    instrument = selectors.instrument_get(exchange_id=PREVIEW_EXCHANGE, symbol=PREVIEW_SYMBOL)
    if instrument is not None:
        end = now_ms() + 60_000
        rows = selectors.candles_between(
            instrument=instrument,
            interval="1m",
            start_ms=end - PREVIEW_MINUTES * 60_000,
            end_ms=end,
            limit=PREVIEW_MINUTES + 1,
        )
        preview["data"] = [
            {"ts": ts, "open": o, "high": h, "low": low, "close": c, "volume": v}
            for ts, o, h, low, c, v, *_ in rows
        ]
    cache.set(PREVIEW_CACHE_KEY, preview, PREVIEW_CACHE_SECONDS)
    return preview


def landing(request: HttpRequest) -> HttpResponse:
    # Rendered into a data attribute (no inline script under the CSP); the page's script
    # draws it at once and then polls market_preview_json.
    preview = json.dumps(market_preview(), separators=(",", ":"))
    return render(request, "landing.html", {"preview_json": preview})


@require_GET
@cache_control(public=True, max_age=PREVIEW_CACHE_SECONDS)
def market_preview_json(request: HttpRequest) -> JsonResponse:
    """Public and read-only: the landing chart's polling endpoint (one shared cached answer)."""
    return JsonResponse(market_preview())


def _app_context(request: OrganizationRequest) -> dict[str, Any]:
    entitlements = entitlements_for(organization=request.organization)
    return {
        "entitlements": entitlements,
        "stream_path": STREAM_PATH,
        "chart_intervals": CHART_INTERVALS,
    }


@organization_required
def dashboard(request: OrganizationRequest) -> HttpResponse:
    return render(request, "dashboard.html", _app_context(request))


@organization_required
def options_calculator(request: OrganizationRequest) -> HttpResponse:
    return render(request, "web/options.html", _app_context(request))


@organization_required
def backtests(request: OrganizationRequest) -> HttpResponse:
    return render(request, "web/backtests.html", _app_context(request))


# --- API documentation ---------------------------------------------------------------------
def _asyncapi_for(request: HttpRequest) -> dict[str, Any]:
    # The request's host was validated against ALLOWED_HOSTS, so it is safe to echo.
    return asyncapi_document(host=request.get_host(), secure=request.is_secure())


@require_GET
def asyncapi_json(request: HttpRequest) -> JsonResponse:
    """Public, like the OpenAPI schema: the stream's contract (AsyncAPI 3.0)."""
    return JsonResponse(_asyncapi_for(request), json_dumps_params={"indent": 2})


def _signed_in(request: HttpRequest | Request) -> bool:
    # DRF's request for the docs view authenticates nobody; Django's session knows.
    user = getattr(getattr(request, "_request", request), "user", None)
    return bool(user and user.is_authenticated)


class ApiDocsView(SpectacularRedocView):
    """Redoc for REST plus the stream's AsyncAPI document, rendered by our template, with
    example addresses on the host the page is served from and a way back to the app."""

    @extend_schema(exclude=True)  # a page, not an API operation (as the parent's get)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response: Response = super().get(request, *args, **kwargs)  # type: ignore[no-untyped-call]  # drf-spectacular leaves it unannotated
        document = _asyncapi_for(request)
        messages = document["components"]["messages"]
        origin = f"{request.scheme}://{request.get_host()}"
        server = document["servers"]["quantsaas"]
        response.data.update(
            {
                "asyncapi_url": "/api/v1/asyncapi.json",
                "stream_url": f"{server['protocol']}://{server['host']}{server['pathname']}",
                "api_origin": origin,
                "client_messages": [
                    (name, m, json.dumps(m["examples"][0]["payload"]))
                    for name, m in messages.items()
                    if "op" in m["payload"]["properties"]
                ],
                "server_messages": [
                    (name, m, json.dumps(m["examples"][0]["payload"]))
                    for name, m in messages.items()
                    if "type" in m["payload"]["properties"]
                ],
                "close_codes": sorted(CLOSE_CODES.items()),
                "app_url": "/dashboard/" if _signed_in(request) else "/",
            }
        )
        return response
