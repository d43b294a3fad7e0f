"""The app pages (markets, options, backtests, usage chart, landing preview) with Django's client.

What the browser does with them is in tests/browser/; here: who may open them, what
the server hands the page, and that every asset is our own (no inline script or style).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from billing.models import Plan, PlanOverride
from marketdata.models import Candle1m, Instrument
from quantsaas.views import PREVIEW_CACHE_KEY, PREVIEW_EXCHANGE, PREVIEW_SYMBOL

pytestmark = pytest.mark.django_db

APP_PAGES = ["dashboard", "options", "backtests"]
CHART_LIBRARY = "vendor/lightweight-charts/5.2.1/lightweight-charts.standalone.production.js"


def _no_inline_code(body: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), "inline <script>"
    assert " style=" not in body and "<style" not in body
    assert "//cdn" not in body


@pytest.mark.parametrize("name", APP_PAGES)
def test_app_pages_ask_visitors_to_sign_in(client, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


@pytest.mark.parametrize("name", APP_PAGES)
def test_app_pages_load_the_vendored_chart_library_and_no_inline_code(alice_client, name):
    response = alice_client.get(reverse(name))

    assert response.status_code == 200
    body = response.content.decode()
    assert f"/static/{CHART_LIBRARY}" in body
    assert "/static/js/qs.js" in body
    assert "TradingView" in body  # the chart library's attribution, in text
    _no_inline_code(body)


def test_vendored_chart_library_ships_with_its_licence():
    folder = Path(settings.BASE_DIR) / "static" / Path(CHART_LIBRARY).parent
    library = (folder / Path(CHART_LIBRARY).name).read_text()

    assert "Lightweight Charts" in library and "v5.2.1" in library[:300]
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_dashboard_hands_the_page_the_plan_delay_and_the_stream_path(alice_client, acme):
    body = alice_client.get(reverse("dashboard")).content.decode()

    assert 'data-stream-path="/ws/v1/stream"' in body
    assert 'data-delay-seconds="900"' in body  # the free plan is delayed
    assert "Acme Capital" in body


def test_dashboard_shows_real_time_for_a_plan_without_delay(alice_client, acme):
    PlanOverride.objects.create(organization=acme, plan=Plan.objects.get(code="pro"), reason="test")

    body = alice_client.get(reverse("dashboard")).content.decode()

    assert 'data-delay-seconds="0"' in body


def test_a_user_without_an_organization_is_sent_to_create_one(client, db):
    from tests.factories import UserFactory

    user = UserFactory()
    user.memberships.all().delete()
    client.force_login(user)

    response = client.get(reverse("options"))

    assert response.status_code == 302
    assert response["Location"] == reverse("organization_create")


def test_tools_navigation_marks_the_current_page(alice_client):
    body = alice_client.get(reverse("backtests")).content.decode()

    assert f'href="{reverse("backtests")}" aria-current="page"' in body
    assert f'href="{reverse("options")}">' in body


def test_usage_page_draws_its_chart_from_the_table(alice_client):
    body = alice_client.get(reverse("usage")).content.decode()

    assert 'id="usage-chart"' in body
    assert "/static/js/usage.js" in body
    assert re.search(r'<tr data-date="\d{4}-\d{2}-\d{2}" data-api="\d+" data-stream="\d+">', body)
    _no_inline_code(body)


def _candles(minutes: int) -> Instrument:
    instrument = Instrument.objects.get(exchange_id=PREVIEW_EXCHANGE, symbol=PREVIEW_SYMBOL)
    now = timezone.now().replace(second=0, microsecond=0)
    for i in range(minutes):
        Candle1m.objects.create(
            instrument=instrument,
            ts=now - timedelta(minutes=minutes - i),
            open=100 + i,
            high=101 + i,
            low=99 + i,
            close=100.5 + i,
            volume=1.0,
            buy_volume=0.5,
            trade_count=3,
            is_final=True,
        )
    return instrument


def test_landing_embeds_recent_candles_of_the_simulated_market(client):
    cache.delete(PREVIEW_CACHE_KEY)
    _candles(5)

    body = client.get(reverse("landing")).content.decode()

    match = re.search(r'data-preview="([^"]+)"', body)
    preview = json.loads(match.group(1).replace("&quot;", '"'))
    assert preview["symbol"] == PREVIEW_SYMBOL
    assert [c["close"] for c in preview["data"]] == [100.5, 101.5, 102.5, 103.5, 104.5]
    assert f'data-preview-url="{reverse("market_preview")}"' in body
    _no_inline_code(body)


def test_preview_endpoint_is_public_cached_and_shared(client):
    cache.delete(PREVIEW_CACHE_KEY)
    _candles(3)
    first = client.get(reverse("market_preview"))
    Candle1m.objects.all().delete()  # within the cache time nobody reaches the database

    second = client.get(reverse("market_preview"))

    assert first.status_code == second.status_code == 200
    assert "max-age=5" in first["Cache-Control"] and "public" in first["Cache-Control"]
    assert len(second.json()["data"]) == 3
    assert client.post(reverse("market_preview")).status_code == 405


def test_market_pages_have_one_navigation_not_a_sidebar_and_a_tab_strip(alice_client):
    for name in ["dashboard", "options", "backtests"]:
        body = alice_client.get(reverse(name)).content.decode()

        assert body.count(f'href="{reverse("backtests")}"') == 1, name
        assert "tools-nav" not in body


def test_dashboard_offers_the_chart_intervals_and_honest_status_slots(alice_client):
    body = alice_client.get(reverse("dashboard")).content.decode()

    intervals = re.findall(r'data-interval="(\w+)"', body)
    assert intervals == ["1m", "5m", "15m", "1h", "4h", "1d"]
    assert 'id="feed-notice"' in body
    assert 'id="vpin-progress"' in body
    _no_inline_code(body)


def test_usage_page_does_not_hold_a_day_against_a_per_minute_limit(alice_client):
    body = alice_client.get(reverse("usage")).content.decode()

    assert "per minute)" not in body
    assert 'id="usage-stream-today"' in body
    assert "a day has no request cap" in body
