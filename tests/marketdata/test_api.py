"""The market-data REST API (docs/api.md): shapes, pagination, formats, errors, plan depth."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from accounts.services.api_keys import api_key_create
from billing.entitlements import entitlements_for
from billing.models import Plan, PlanOverride
from marketdata.models import Instrument, Trade
from marketdata.sim.history import sim_history_load
from quantsaas.timeutil import dt_to_ms, ms_to_dt, now_ms

DAY_MS = 86_400_000
BTC = "/api/v1/markets/sim/BTC-USD"


@pytest.fixture
def history(acme) -> int:
    """Ten minutes of simulated history ending at the current minute; returns its end.

    Acme reads it in real time: the free plan's limits without its delay (delayed plans
    have their own tests in test_delayed_plans.py).
    """
    realtime = Plan.objects.get(code="free")  # saved below as a private copy
    realtime.pk, realtime.code, realtime.is_public = None, "free-realtime", False
    realtime.stream_delay_seconds = 0
    realtime.save()
    PlanOverride.objects.create(organization=acme, plan=realtime, reason="real-time reads")
    end = now_ms()
    end -= end % 60_000
    sim_history_load(minutes=10, seed=42, end_ms=end)
    return end


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def test_market_data_needs_an_authenticated_caller(api_client):
    error_of(api_client.get("/api/v1/exchanges"), 401, "authentication_failed")


def test_exchanges_list_their_feed_status(alice_client):
    body = alice_client.get("/api/v1/exchanges").json()

    assert {e["id"] for e in body["data"]} >= {"sim", "binance", "coinbase", "kraken"}
    assert body["next"] is None
    for exchange in body["data"]:
        assert {"state", "connected", "last_message_age_ms"} <= set(exchange["status"])


def test_instruments_filter_by_exchange_and_use_base_quote_symbols(alice_client):
    body = alice_client.get("/api/v1/instruments?exchange=sim").json()

    assert [i["symbol"] for i in body["data"]] == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert body["data"][0]["ccxt_symbol"] == "BTC/USD"
    error_of(alice_client.get("/api/v1/instruments?exchange=nasdaq"), 404, "not_found")


def test_unknown_exchange_or_symbol_is_404(alice_client):
    error_of(alice_client.get("/api/v1/markets/nasdaq/BTC-USD/trades"), 404, "not_found")
    error_of(alice_client.get("/api/v1/markets/sim/DOGE-USD/candles"), 404, "not_found")
    error_of(alice_client.get("/api/v1/markets/sim/BTC-USD/book"), 404, "not_found")


def test_walking_every_trades_page_returns_each_trade_once_oldest_first(alice_client, history):
    start = history - 10 * 60_000
    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    stored = list(
        Trade.objects.filter(instrument=instrument)
        .order_by("ts", "id")
        .values_list("trade_id", flat=True)
    )
    assert len(stored) > 1000

    seen, url, pages = [], f"{BTC}/trades?start={start}&end={history}&limit=250", 0
    while url:
        body = alice_client.get(url).json()
        seen.extend(body["data"])
        url, pages = body["next"], pages + 1
        assert url is None or url.startswith("http://testserver/api/v1/")

    assert pages == -(-len(stored) // 250)
    assert [t["id"] for t in seen] == stored
    assert [t["ts"] for t in seen] == sorted(t["ts"] for t in seen)
    assert set(seen[0]) == {"id", "ts", "price", "size", "side"}


def test_iso_and_millisecond_times_select_the_same_trades(alice_client, history):
    start, end = history - 5 * 60_000, history - 4 * 60_000
    iso = lambda ms: ms_to_dt(ms).isoformat().replace("+00:00", "Z")  # noqa: E731

    by_ms = alice_client.get(f"{BTC}/trades?start={start}&end={end}").json()["data"]
    by_iso = alice_client.get(f"{BTC}/trades?start={iso(start)}&end={iso(end)}").json()["data"]

    assert by_ms and by_ms == by_iso
    assert all(start <= t["ts"] < end for t in by_ms)


def test_bad_parameters_are_400_naming_the_field(alice_client, history):
    cases = {
        f"{BTC}/trades?start=yesterday": "start",
        f"{BTC}/trades?limit=0": "limit",
        f"{BTC}/trades?cursor=not-a-cursor": "cursor",
        f"{BTC}/trades?start=2000&end=1000": "end",
        f"{BTC}/candles?interval=7m": "interval",
        f"{BTC}/book?depth=999": "depth",
    }
    for url, field in cases.items():
        error = error_of(alice_client.get(url), 400, "invalid")
        assert set(error["details"]["fields"]) == {field}, url


def test_candles_are_utc_aligned_and_only_the_open_bucket_is_not_final(alice_client, history):
    body = alice_client.get(f"{BTC}/candles?interval=1m&limit=100").json()
    candles = body["data"]

    assert len(candles) == 10
    assert all(c["ts"] % 60_000 == 0 for c in candles)
    assert all(c["final"] for c in candles)  # the history ends at the current minute

    hourly = alice_client.get(f"{BTC}/candles?interval=1h").json()["data"]
    current_hour = now_ms() // 3_600_000 * 3_600_000
    assert all(c["ts"] % 3_600_000 == 0 for c in hourly)
    # The history's last hour is still open unless it started just after the hour turned.
    assert hourly[-1]["final"] is (hourly[-1]["ts"] < current_hour)
    assert sum(c["trades"] for c in hourly) == sum(c["trades"] for c in candles)


def test_candle_pages_continue_where_the_last_one_stopped(alice_client, history):
    start = history - 10 * 60_000
    first = alice_client.get(f"{BTC}/candles?interval=1m&start={start}&limit=4").json()
    second = alice_client.get(first["next"]).json()

    assert [c["ts"] for c in first["data"]] == [start + i * 60_000 for i in range(4)]
    assert second["data"][0]["ts"] == start + 4 * 60_000


def test_book_and_ticker_show_the_latest_state(alice_client, history):
    book = alice_client.get(f"{BTC}/book?depth=5").json()
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] < book["asks"][0][0]
    assert book["ts"] == history

    ticker = alice_client.get(f"{BTC}/ticker").json()
    assert ticker["symbol"] == "BTC-USD" and ticker["ts"] == history
    assert ticker["bid"] < ticker["ask"]
    assert ticker["volume_24h"] > 0
    assert ticker["change_24h"] == pytest.approx(
        ticker["last"] - ticker["last"] / (1 + ticker["change_pct_24h"])
    )


def test_csv_is_served_to_clients_that_accept_it(alice_client, history):
    url = f"{BTC}/trades?start={history - 60_000}&end={history}"
    as_json = alice_client.get(url).json()["data"]

    response = alice_client.get(url, HTTP_ACCEPT="text/csv")

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == ["id", "ts", "price", "size", "side"]
    assert [r["id"] for r in rows] == [t["id"] for t in as_json]
    book = alice_client.get(f"{BTC}/book?depth=3", HTTP_ACCEPT="text/csv").content.decode()
    assert book.splitlines()[0] == "side,price,size" and len(book.splitlines()) == 7


def test_csv_clients_still_get_json_errors(alice_client):
    response = alice_client.get(f"{BTC}/trades?limit=-1", HTTP_ACCEPT="text/csv")
    error_of(response, 400, "invalid")


def test_responses_are_gzip_compressed_when_the_client_accepts_it(alice_client, history):
    url = f"{BTC}/trades?start={history - 600_000}&end={history}&limit=2000"
    plain = alice_client.get(url)

    response = alice_client.get(url, HTTP_ACCEPT_ENCODING="gzip")

    assert response["Content-Encoding"] == "gzip"
    assert len(response.content) < len(plain.content) / 2
    assert json.loads(gzip.decompress(response.content)) == plain.json()


def test_history_beyond_the_plan_depth_is_403_naming_the_plans_that_allow_it(
    alice_client, acme, history
):
    # Acme has no subscription: the free plan and its history depth apply.
    days = entitlements_for(organization=acme).history_days
    assert days is not None
    too_old = now_ms() - (days + 1) * DAY_MS

    error = error_of(alice_client.get(f"{BTC}/trades?start={too_old}"), 403, "plan_required")
    assert error["details"]["plans"] and "free" not in error["details"]["plans"]
    error_of(alice_client.get(f"{BTC}/candles?interval=1d&start={too_old}"), 403, "plan_required")
    within = now_ms() - (days - 1) * DAY_MS
    assert alice_client.get(f"{BTC}/trades?start={within}").status_code == 200


def test_an_api_key_of_another_organization_reads_the_same_global_tape(
    alice_client, mallory, globex, api_client, history
):
    realtime = Plan.objects.get(code="free-realtime")  # as Acme's, so both read the same
    PlanOverride.objects.create(organization=globex, plan=realtime, reason="real-time reads")
    created = api_key_create(organization=globex, created_by=mallory, name="bot")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    url = f"{BTC}/trades?start={history - 60_000}&end={history}"

    assert api_client.get(url).json() == alice_client.get(url).json()
    first = Trade.objects.order_by("ts").first()
    assert dt_to_ms(first.ts) >= history - 600_000
