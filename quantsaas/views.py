"""Site-wide pages that belong to no single app: landing, dashboard, options, backtests.

The pages are thin shells: their data comes from the public REST API and the stream
(the same ones customers program against), loaded by files in static/js/. Views only
hand the page what it cannot ask the API for: the organization's plan and the
stream's address. See docs/web.md.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from billing.entitlements import entitlements_for
from marketdata import selectors
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


def market_preview() -> dict:
    """Recent 1-minute candles of the preview market, oldest first, in the REST shape."""
    cached = cache.get(PREVIEW_CACHE_KEY)
    if cached is not None:
        return cached
    preview = {"exchange": PREVIEW_EXCHANGE, "symbol": PREVIEW_SYMBOL, "data": []}
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


def _app_context(request: HttpRequest) -> dict:
    entitlements = entitlements_for(organization=request.organization)
    return {
        "entitlements": entitlements,
        "stream_path": STREAM_PATH,
    }


def _organization_page(request: HttpRequest, template: str) -> HttpResponse:
    if request.organization is None:
        return redirect("organization_create")
    return render(request, template, _app_context(request))


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return _organization_page(request, "dashboard.html")


@login_required
def options_calculator(request: HttpRequest) -> HttpResponse:
    return _organization_page(request, "web/options.html")


@login_required
def backtests(request: HttpRequest) -> HttpResponse:
    return _organization_page(request, "web/backtests.html")
