"""Bounded work per analytics request: a free key cannot make the web process allocate
without limit, and extreme numbers answer 400 `invalid`, never 500 (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.vpin import TooManyBuckets, vpin
from marketdata.models import Candle1m, Instrument, Trade
from marketdata.sim.history import sim_history_load
from quantsaas.timeutil import ms_to_dt, now_ms
from tests.analytics.conftest import error_of
from tests.factories import plan_override_with

BTC = "/api/v1/analytics/sim/BTC-USD"


@pytest.fixture
def history(acme, btc) -> tuple[int, int]:
    """Fifteen minutes of simulated trades and candles, read in real time."""
    plan_override_with(organization=acme, stream_delay_seconds=0)
    end = now_ms()
    end -= end % 60_000
    sim_history_load(minutes=15, seed=3, end_ms=end)
    return end - 15 * 60_000, end


# --- VPIN ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bucket_volume", ["2.2e-313", "5e-324", "1e-300", "0.000000001", "1e-12"])
def test_a_tiny_bucket_volume_is_refused_before_allocating(alice_client, history, bucket_volume):
    start, end = history
    response = alice_client.get(
        f"{BTC}/vpin?bucket_volume={bucket_volume}&start={start}&end={end}&limit=10000"
    )

    error = error_of(response, 400, "invalid")
    assert "limit" in error["details"]["fields"]["bucket_volume"]


@pytest.mark.parametrize(
    "bucket_volume", ["1e309", "-1e309", "nan", "inf", "-0", "0", "1" + "0" * 400, "0x10"]
)
def test_extreme_bucket_volumes_are_400(alice_client, btc, bucket_volume):
    response = alice_client.get(f"{BTC}/vpin?bucket_volume={bucket_volume}")

    error = error_of(response, 400, "invalid")
    assert "bucket_volume" in error["details"]["fields"]


def test_a_huge_bucket_volume_is_an_empty_series(alice_client, history):
    start, end = history
    body = alice_client.get(f"{BTC}/vpin?bucket_volume=1e308&start={start}&end={end}").json()

    assert body["data"] == [] and body["source"] == "trades"


def test_the_bucket_count_is_bounded_by_the_limit_the_caller_gave(alice_client, btc, history):
    start, end = history
    # Exactly `limit` buckets pass; one more than the limit is refused.
    volume = sum(Trade.objects.filter(instrument=btc).values_list("size", flat=True))
    bucket = volume / 100.5  # 100 complete buckets
    ok = alice_client.get(f"{BTC}/vpin?bucket_volume={bucket}&start={start}&end={end}&limit=100")
    refused = alice_client.get(
        f"{BTC}/vpin?bucket_volume={bucket}&start={start}&end={end}&limit=99"
    )

    assert ok.status_code == 200 and len(ok.json()["data"]) == 100
    error_of(refused, 400, "invalid")


def test_the_library_refuses_more_buckets_than_allowed():
    ts, price, size = np.arange(10) * 1_000, np.full(10, 100.0), np.ones(10)

    with pytest.raises(TooManyBuckets):
        vpin(ts, price, size, 2.2e-313, window=2)
    with pytest.raises(TooManyBuckets):
        vpin(ts, price, size, 0.5, window=2, max_buckets=19)
    assert vpin(ts, price, size, 0.5, window=2, max_buckets=20).ts_ms.size == 20


# --- volatility ---------------------------------------------------------------------------
def _minutes(instrument: Instrument, *, first: int, n: int, price) -> None:
    Candle1m.objects.bulk_create(
        Candle1m(
            instrument=instrument,
            ts=ms_to_dt(first + i * 60_000),
            open=price(i),
            high=price(i),
            low=price(i),
            close=price(i),
            volume=1.0,
            trade_count=1,
            is_final=True,
        )
        for i in range(n)
    )


def test_the_volatility_look_back_stops_at_the_plans_history(alice_client, acme, btc):
    plan_override_with(organization=acme, history_days=1, stream_delay_seconds=0)
    now = now_ms()
    boundary = now - now % 60_000 - 86_400_000
    # Wild prices before the plan's history, flat ones inside it.
    _minutes(btc, first=boundary - 120 * 60_000, n=120, price=lambda i: 100.0 * (1 + i % 2))
    _minutes(btc, first=boundary, n=60, price=lambda i: 100.0)

    body = alice_client.get(
        f"{BTC}/volatility?interval=1m&window=30&start={boundary}&end={boundary + 3_600_000}"
    ).json()

    values = [row["volatility"] for row in body["data"]]
    assert len(values) == 60
    assert values[:30] == [None] * 30  # the first windows would need bars the plan lacks
    assert values[30:] == [0.0] * 30


@pytest.mark.parametrize(("interval", "window"), [("1d", 367), ("1d", 1_000)])
def test_window_times_interval_is_capped(alice_client, acme, btc, interval, window):
    plan_override_with(organization=acme, history_days=None, stream_delay_seconds=0)

    response = alice_client.get(f"{BTC}/volatility?interval={interval}&window={window}")

    error = error_of(response, 400, "invalid")
    assert "366" in error["details"]["fields"]["window"][0]


def test_a_year_of_daily_bars_is_allowed(alice_client, acme, btc):
    plan_override_with(organization=acme, history_days=None, stream_delay_seconds=0)

    assert alice_client.get(f"{BTC}/volatility?interval=1d&window=366").status_code == 200
