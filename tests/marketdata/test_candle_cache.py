"""Cached candle pages: repeated requests cost no query, yet every answer is current.

Pages are kept in memory under the instrument's candle version (marketdata.candle_cache);
a candle write replaces the version, and the page key holds the bucket "now" is in. These
tests read the API as a customer would and check that a cached answer never differs from
what the database says, whatever the plan, the format, the clock or the cache's health.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

import quantsaas.cache
from accounts.services.api_keys import api_key_create
from marketdata import candle_cache
from marketdata.api import views
from marketdata.candle_cache import candles_changed
from marketdata.models import Candle1m, Instrument
from marketdata.records import CandleRecord
from marketdata.services import candles_upsert
from quantsaas.timeutil import MINUTE_MS, ms_to_dt, now_ms
from tests.factories import plan_grant

HOUR_MS = 60 * MINUTE_MS
CANDLES = "/api/v1/markets/sim/BTC-USD/candles"


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def minute(ts: int, close: float, *, final: bool = True) -> CandleRecord:
    return CandleRecord(
        exchange="sim",
        symbol="BTC/USD",
        ts=ts,
        open=close - 0.5,
        high=close + 1.0,
        low=close - 1.0,
        close=close,
        volume=1.0,
        buy_volume=0.5,
        trade_count=3,
        is_final=final,
    )


def close_at(ts: int, start: int) -> float:
    """Each stored minute's close: distinct, so a row shows which minute it came from."""
    return 100.0 + (ts - start) // MINUTE_MS


def minutes_store(start: int, count: int, *, open_last: bool = False) -> list[int]:
    stamps = [start + i * MINUTE_MS for i in range(count)]
    candles_upsert(
        candles=[
            minute(ts, close_at(ts, start), final=not (open_last and ts == stamps[-1]))
            for ts in stamps
        ]
    )
    return stamps


def clock_pin(monkeypatch, ms: int) -> None:
    """The endpoint's "now" (cutoffs, finality, default windows); Redis keeps its own clock."""
    monkeypatch.setattr(views, "now_ms", lambda: ms)


@pytest.fixture
def btc(db) -> Instrument:
    return Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")


@pytest.fixture
def current_minute() -> int:
    now = now_ms()
    return now - now % MINUTE_MS


@pytest.fixture(autouse=True)
def _clock(monkeypatch, current_minute) -> None:
    """Half a minute into the current one, so no test sees the minute turn between requests."""
    clock_pin(monkeypatch, current_minute + 30_000)


class FakeMonotonic:
    """The clock of the process-local caches (quantsaas.cache), moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()  # entries made before the swap keep their meaning

    def monotonic(self) -> float:
        return self.now

    def version_lapses(self) -> None:
        """Move past the time this process may reuse an instrument's candle version."""
        self.now += candle_cache.VERSION_LOCAL_SECONDS + 0.01


@pytest.fixture
def local_clock(monkeypatch) -> FakeMonotonic:
    clock = FakeMonotonic()
    monkeypatch.setattr(quantsaas.cache, "time", clock)
    return clock


@pytest.fixture
def pro_client(acme, alice) -> APIClient:
    """Acme reads in real time, with an API key (the way programs and charts ask)."""
    plan_grant(organization=acme, code="pro")
    return key_client(api_key_create(organization=acme, created_by=alice, name="chart").raw_key)


@pytest.fixture
def free_client(globex, mallory) -> APIClient:
    """Globex is on the free plan: its data is 15 minutes late."""
    return key_client(api_key_create(organization=globex, created_by=mallory, name="bot").raw_key)


@pytest.fixture
def tape(btc, current_minute) -> list[int]:
    """Ten closed minutes in the past hour; returns their open times."""
    return minutes_store(current_minute - 20 * MINUTE_MS, 10)


def window(stamps: list[int], interval: str = "1m") -> str:
    return f"{CANDLES}?interval={interval}&start={stamps[0]}&end={stamps[-1] + MINUTE_MS}"


def rows_of(client: APIClient, url: str, **headers) -> list[dict]:
    response = client.get(url, **headers)
    assert response.status_code == 200, response.content
    return response.json()["data"]


# --- (a) a repeated request is answered from memory -------------------------------------


def test_a_repeated_request_costs_no_query_and_returns_the_same_bytes(
    pro_client, tape, django_assert_num_queries
):
    url = window(tape)
    first = pro_client.get(url)
    assert first.status_code == 200
    assert len(first.json()["data"]) == len(tape)

    with django_assert_num_queries(0):
        second = pro_client.get(url)

    assert second.status_code == 200
    assert second.content == first.content


def test_the_latest_page_a_chart_polls_costs_no_query_the_second_time(
    pro_client, tape, django_assert_num_queries
):
    url = f"{CANDLES}?interval=1m&limit=100"
    first = pro_client.get(url)
    assert [c["ts"] for c in first.json()["data"]] == tape

    with django_assert_num_queries(0):
        second = pro_client.get(url)

    assert second.content == first.content


# --- (b) a candle write shows on the next request ---------------------------------------


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_a_rewritten_candle_shows_on_the_next_request(pro_client, tape, interval):
    url = window(tape, interval)
    before = rows_of(pro_client, url)
    assert before[-1]["close"] == close_at(tape[-1], tape[0])

    candles_upsert(candles=[minute(tape[-1], 555.0)])

    after = rows_of(pro_client, url)
    assert after[-1]["close"] == 555.0
    assert after[-1]["high"] == 556.0
    assert after[:-1] == before[:-1]


def test_a_new_minute_shows_on_the_next_request_for_the_latest_page(
    pro_client, tape, current_minute
):
    url = f"{CANDLES}?interval=1m&limit=100"
    assert [c["ts"] for c in rows_of(pro_client, url)] == tape

    candles_upsert(candles=[minute(current_minute, 777.0, final=False)])

    rows = rows_of(pro_client, url)
    assert [c["ts"] for c in rows] == [*tape, current_minute]
    assert (rows[-1]["close"], rows[-1]["final"]) == (777.0, False)


def test_a_write_committed_by_another_process_shows_once_it_bumps_the_version(
    pro_client, btc, tape
):
    url = window(tape)
    before = rows_of(pro_client, url)

    # Another process writes the row; its candles_changed (the one shared signal) follows.
    Candle1m.objects.filter(instrument=btc, ts=ms_to_dt(tape[3])).update(close=999.0)
    # Until the version moves this process answers from memory: the write below is what
    # retires the page, not a coincidence of the cache being empty.
    assert rows_of(pro_client, url) == before
    candles_changed([btc.pk])

    after = rows_of(pro_client, url)
    assert after[3]["close"] == 999.0
    assert after[:3] == before[:3] and after[4:] == before[4:]


def test_a_version_bumped_in_another_process_retires_pages_here_within_its_local_seconds(
    pro_client, btc, tape, local_clock
):
    url = window(tape)
    rows_of(pro_client, url)

    # The writer's process: the row, then its candles_changed, which reaches this process
    # only through the shared cache (candle_cache._version_key is where it writes).
    Candle1m.objects.filter(instrument=btc, ts=ms_to_dt(tape[3])).update(close=999.0)
    cache.set(candle_cache._version_key(btc.pk), "bumped-by-the-writer", None)
    local_clock.version_lapses()

    assert rows_of(pro_client, url)[3]["close"] == 999.0


def test_a_write_to_another_instrument_shows_there_and_leaves_this_page_as_it_was(pro_client, tape):
    url = window(tape)
    before = rows_of(pro_client, url)

    candles_upsert(candles=[replace(minute(tape[0], 1.0), symbol="ETH/USD")])

    assert rows_of(pro_client, url) == before
    eth_rows = rows_of(pro_client, url.replace("BTC-USD", "ETH-USD"))
    assert [c["close"] for c in eth_rows] == [1.0]


# --- (c) finality follows the clock -----------------------------------------------------


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_the_bucket_in_progress_becomes_final_when_the_clock_passes_its_end(
    pro_client, btc, current_minute, monkeypatch, interval
):
    hour = current_minute - current_minute % HOUR_MS - 2 * HOUR_MS  # a whole past hour
    stamps = minutes_store(hour, 5)  # every stored minute is final
    url = window(stamps, interval)
    interval_ms = MINUTE_MS if interval == "1m" else HOUR_MS

    clock_pin(monkeypatch, stamps[-1] + 30_000)  # inside the last minute, and the hour
    rows = rows_of(pro_client, url)
    assert rows[-1]["final"] is False
    assert all(c["final"] for c in rows[:-1])

    # The clock moves past the bucket's end; no candle is written.
    clock_pin(monkeypatch, rows[-1]["ts"] + interval_ms + 1_000)
    rows = rows_of(pro_client, url)
    assert all(c["final"] for c in rows)


# --- (d) one page, two formats ----------------------------------------------------------


@pytest.mark.parametrize("json_first", [True, False])
def test_csv_and_json_answers_of_the_same_page_carry_the_same_rows(pro_client, tape, json_first):
    url = window(tape)

    def as_csv() -> list[dict]:
        response = pro_client.get(url, HTTP_ACCEPT="text/csv")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.content.decode())))

    if json_first:
        as_json = rows_of(pro_client, url)
        rows = as_csv()
    else:
        rows = as_csv()
        as_json = rows_of(pro_client, url)

    assert len(rows) == len(as_json) == len(tape)
    assert list(rows[0]) == list(as_json[0])
    assert rows == [{k: str(v) for k, v in candle.items()} for candle in as_json]


# --- (e) the shared cache is down -------------------------------------------------------


def _down(*args, **kwargs):
    raise ConnectionError("the shared cache is down")


def test_candles_are_answered_from_the_database_while_the_shared_cache_is_down(
    pro_client, btc, tape, monkeypatch, local_clock
):
    url = window(tape)
    before = rows_of(pro_client, url)  # a page cached while the cache was up

    with monkeypatch.context() as outage:
        # Reads fail everywhere (the key, the plan, the candle version): all fall back.
        outage.setattr(candle_cache.cache, "get", _down)
        assert rows_of(pro_client, url) == before

        # No write can be announced while the cache is down: once this process's copy of
        # the version lapses, every answer reads the database.
        Candle1m.objects.filter(instrument=btc, ts=ms_to_dt(tape[2])).update(close=321.0)
        local_clock.version_lapses()
        assert rows_of(pro_client, url)[2]["close"] == 321.0
        candles_upsert(candles=[minute(tape[-1], 654.0)])
        rows = rows_of(pro_client, url)
        assert (rows[2]["close"], rows[-1]["close"]) == (321.0, 654.0)

    rows = rows_of(pro_client, url)
    assert (rows[2]["close"], rows[-1]["close"]) == (321.0, 654.0)


def test_a_write_that_could_not_bump_the_version_is_shown_once_the_cache_is_back(
    pro_client, btc, tape, monkeypatch, local_clock
):
    """A Redis blip in which a writer (another process) stores candles.

    The writer's candles_changed fails and can clear only its own memory; this process
    kept a page from before the blip under the version that is still in Redis.
    """
    url = window(tape)
    rows_of(pro_client, url)  # cached under the current version

    with monkeypatch.context() as outage:
        for method in ("get", "add", "set", "set_many"):
            outage.setattr(candle_cache.cache, method, _down)
        Candle1m.objects.filter(instrument=btc, ts=ms_to_dt(tape[2])).update(close=321.0)
        local_clock.version_lapses()
        assert rows_of(pro_client, url)[2]["close"] == 321.0  # the database, during the blip

    # The cache is back, still holding the version from before the write.
    assert rows_of(pro_client, url)[2]["close"] == 321.0


# --- (f) delayed and real-time plans never share a page ---------------------------------


@pytest.fixture
def half_hour(btc, current_minute) -> list[int]:
    """Thirty-one minutes up to the current one, which is still open."""
    return minutes_store(current_minute - 30 * MINUTE_MS, 31, open_last=True)


@pytest.mark.parametrize("interval", ["1m", "1h"])
@pytest.mark.parametrize("query", ["latest", "explicit"])
@pytest.mark.parametrize("realtime_first", [True, False])
def test_a_delayed_plan_never_gets_the_real_time_page_of_the_same_query(
    pro_client, free_client, half_hour, current_minute, monkeypatch, interval, query, realtime_first
):
    now = current_minute + 30_000
    clock_pin(monkeypatch, now)
    known = (now - 900_000) - (now - 900_000) % MINUTE_MS  # the free plan's last whole minute
    if query == "latest":
        url = f"{CANDLES}?interval={interval}&limit=100"
    else:
        url = f"{CANDLES}?interval={interval}&start={half_hour[0]}&end={now + HOUR_MS}"

    def delayed() -> list[dict]:
        response = free_client.get(url)
        assert response.status_code == 200
        assert response["X-Data-Delay"] == "900"
        return response.json()["data"]

    if realtime_first:
        realtime, late = rows_of(pro_client, url), delayed()
    else:
        late, realtime = delayed(), rows_of(pro_client, url)

    start = half_hour[0]
    visible = [ts for ts in half_hour if ts < known]
    assert realtime[-1]["close"] == close_at(current_minute, start)
    assert realtime[-1]["final"] is False
    assert late != realtime
    assert late[-1]["close"] == close_at(visible[-1], start)
    assert sum(c["volume"] for c in late) == len(visible)
    assert sum(c["volume"] for c in realtime) == len(half_hour)
    if interval == "1m":
        assert [c["ts"] for c in late] == visible
        assert all(c["final"] for c in late)
    else:
        assert all(c["ts"] < known for c in late)
        assert late[-1]["final"] is False  # the hour holding the cutoff is partial


def test_a_window_wholly_before_the_cutoff_reads_the_same_on_both_plans(
    pro_client, free_client, half_hour
):
    url = f"{CANDLES}?interval=1m&start={half_hour[0]}&end={half_hour[10]}"

    realtime = rows_of(pro_client, url)
    late = rows_of(free_client, url)

    assert [c["ts"] for c in late] == half_hour[:10]
    assert late == realtime
