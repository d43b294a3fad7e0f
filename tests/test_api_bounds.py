"""Hostile and careless input answers 400 `invalid` (or 404) in the error shape, never a 500:
deeply nested bodies, 400-digit numbers, forged cursors, timestamps at the end of the
representable range, OPTIONS with ?format=csv, and unknown routes even in DEBUG (issue 13)."""

from __future__ import annotations

import base64

import pytest
from django.test import override_settings
from django.urls import clear_url_caches
from rest_framework.test import APIClient

from quantsaas.api.fields import MAX_MS
from tests.factories import plan_override_with

MARKET = "/api/v1/markets/sim/BTC-USD"
ANALYTICS = "/api/v1/analytics/sim/BTC-USD"
HULL = {"type": "call", "spot": 42, "strike": 40, "expiry": 0.5, "rate": 0.1}


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code
    return error


@pytest.fixture
def realtime_client(alice_client, acme):
    plan_override_with(organization=acme, stream_delay_seconds=0, history_days=None)
    return alice_client


# --- bodies -------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [100, 5_000, 100_000])
def test_a_deeply_nested_body_is_400(alice_client, depth):
    body = '{"options": ' + "[" * depth + "]" * depth + "}"

    response = alice_client.post("/api/v1/options/price", body, content_type="application/json")

    error_of(response, 400, "invalid")


@pytest.mark.parametrize(
    "number", ["1" * 400, "-" + "9" * 400, "1." + "0" * 400, "1e400", "-1e400", "1" * 5_000]
)
def test_a_400_digit_number_in_a_body_is_400(alice_client, number):
    option = (
        '{"type": "call", "spot": %s, "strike": 40, "expiry": 0.5, "rate": 0.1, "volatility": 0.2}'
    )
    body = '{"options": [' + option % number + "]}"

    response = alice_client.post("/api/v1/options/price", body, content_type="application/json")

    error_of(response, 400, "invalid")


def test_huge_numbers_in_a_backtest_are_400(realtime_client):
    body = (
        '{"exchange": "sim", "symbol": "BTC-USD", "start": %s, "strategy": "momentum",'
        ' "params": {"lookback": %s}, "fee_bp": %s}'
    )
    for start, lookback, fee in (("1" * 400, 5, 0), (0, "9" * 400, 0), (0, 5, "1e999")):
        response = realtime_client.post(
            "/api/v1/backtests", body % (start, lookback, fee), content_type="application/json"
        )
        error_of(response, 400, "invalid")


def test_numbers_of_ordinary_length_still_work(alice_client):
    body = {"options": [{**HULL, "volatility": 0.2, "spot": 42.000000000000001}]}

    assert alice_client.post("/api/v1/options/price", body, format="json").status_code == 200


# --- query parameters ---------------------------------------------------------------------
def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "raw",
    [
        f"t1:{(MAX_MS + 1) * 1000}:1",  # past year 9999
        f"t1:{'9' * 400}:1",
        f"t1:1:{'9' * 400}",  # a row id past bigint
        "t1:\u00b2:1",  # a digit to str.isdigit, not to int()
        "t1:-5:1",
    ],
)
def test_a_forged_cursor_is_400(realtime_client, raw):
    error = error_of(realtime_client.get(f"{MARKET}/trades?cursor={_cursor(raw)}"), 400, "invalid")

    assert "cursor" in error["details"]["fields"]


@pytest.mark.parametrize(
    "path",
    [
        f"{MARKET}/candles?interval=1d&end={MAX_MS}",
        f"{MARKET}/candles?interval=1d&start={MAX_MS - 1}",
        f"{MARKET}/candles?interval=1h&start={MAX_MS - 10}&end={MAX_MS}",
        f"{MARKET}/trades?end={MAX_MS}",
        f"{MARKET}/trades?start={MAX_MS - 1}",
        f"{MARKET}/candles?end=9999-12-31T23:59:59.999Z",
        f"{ANALYTICS}/volatility?interval=1d&end={MAX_MS}",
        f"{ANALYTICS}/volatility?interval=1d&start={MAX_MS - 1}",
        f"{ANALYTICS}/ofi?interval=1h&end={MAX_MS}",
        f"{ANALYTICS}/vpin?bucket_volume=1&end={MAX_MS}",
        f"{ANALYTICS}/vpin?bucket_volume=1&start={MAX_MS - 1}",
    ],
)
def test_timestamps_at_the_end_of_the_range_are_never_a_500(realtime_client, path):
    response = realtime_client.get(path)

    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 400:
        error_of(response, 400, "invalid")


@pytest.mark.parametrize(
    "path",
    [
        f"{MARKET}/candles?end={MAX_MS + 1}",
        f"{MARKET}/candles?limit={'9' * 400}",
        f"{MARKET}/trades?limit=-{'9' * 400}",
        f"{MARKET}/book?depth={'1' * 400}",
        f"{ANALYTICS}/vpin?bucket_volume=1&window={'9' * 400}",
        "/api/v1/backtests?before=" + "9" * 400,
        "/api/v1/backtests?before=-1",
        f"{MARKET}/candles?start=+275760-09-13",
    ],
)
def test_out_of_range_numbers_in_queries_are_400(realtime_client, path):
    error_of(realtime_client.get(path), 400, "invalid")


# --- OPTIONS and CSV ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["book", "trades", "candles", "ticker"])
def test_options_with_csv_format_answers_the_metadata_as_json(alice_client, path):
    response = alice_client.options(f"{MARKET}/{path}?format=csv")

    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("application/json")


# --- unknown routes -----------------------------------------------------------------------
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing", "/api/v2/keys", "/api/", "/api/v1/markets/sim"]
)
def test_an_unknown_api_url_is_json_404_in_debug_and_production(debug, path):
    with override_settings(DEBUG=debug):
        clear_url_caches()
        client = APIClient()
        for method in ("get", "post", "delete"):
            error_of(getattr(client, method)(path), 404, "not_found")
    clear_url_caches()


def test_the_site_keeps_its_own_404_page(db):
    response = APIClient().get("/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_an_api_path_missing_its_slash_still_redirects(db):
    response = APIClient().get("/api/v1/schema")

    assert response.status_code == 301 and response["Location"].endswith("/api/v1/schema/")
