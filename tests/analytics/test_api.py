"""The analytics REST API: options batches, OFI/VPIN/volatility series, backtest jobs,
plan gates and tenant isolation (Mallory's Globex must never see Acme's jobs)."""

from __future__ import annotations

import numpy as np
import pytest
from asgiref.sync import async_to_sync

from analytics import volatility
from analytics.backtest import backtest
from analytics.live import LiveAnalytics
from analytics.models import Backtest
from analytics.ofi import ofi
from analytics.options import bsm_price
from analytics.tasks import backtest_run
from analytics.vpin import vpin
from marketdata.models import Candle1m, Instrument, Trade
from marketdata.records import BookUpdate, TradeRecord
from marketdata.sim.history import sim_history_load
from quantsaas.celery import app as celery_app
from quantsaas.timeutil import dt_to_ms, ms_to_dt, now_ms
from tests.analytics.conftest import error_of
from tests.factories import plan_grant, plan_override_with

PRICE = "/api/v1/options/price"
IV = "/api/v1/options/implied-volatility"
BTC = "/api/v1/analytics/sim/BTC-USD"
HULL = {"spot": 42, "strike": 40, "expiry": 0.5, "rate": 0.10, "dividend_yield": 0}


@pytest.fixture
def realtime(acme) -> None:
    """Acme reads real time; the free plan's delay would cut off the fresh candles."""
    plan_grant(organization=acme)


@pytest.fixture
def eager_celery():
    """Run enqueued tasks in this process (the worker path has its own e2e test)."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


def _plan_override(organization, **limits):
    return plan_override_with(organization=organization, **limits)


# --- options ------------------------------------------------------------------------------
def test_hull_textbook_option_prices_and_greeks(alice_client):
    body = alice_client.post(
        PRICE,
        {
            "options": [
                {"type": "call", **HULL, "volatility": 0.2},
                {"type": "put", **HULL, "volatility": 0.2},
            ]
        },
        format="json",
    ).json()

    call, put = body["data"]
    assert round(call["price"], 4) == 4.7594
    assert round(put["price"], 4) == 0.8086
    assert round(call["delta"], 4) == 0.7791
    assert round(call["gamma"], 4) == 0.0500
    assert round(call["vega"], 3) == 8.813
    assert round(call["theta"], 3) == -4.559
    assert round(call["rho"], 3) == 13.982
    assert call["delta"] - put["delta"] == pytest.approx(1.0)  # parity, no dividends


def test_a_batch_of_ten_thousand_answers_bad_rows_in_place(alice_client):
    rng = np.random.default_rng(4)
    n = 10_000
    rows = [
        {
            "type": "call" if i % 2 else "put",
            "spot": float(rng.uniform(50, 150)),
            "strike": float(rng.uniform(50, 150)),
            "expiry": float(rng.uniform(0.01, 3)),
            "rate": float(rng.uniform(-0.01, 0.08)),
            "dividend_yield": 0.01,
            "volatility": float(rng.uniform(0.05, 1.5)),
        }
        for i in range(n)
    ]
    bad = {17: {"type": "straddle"}, 404: {"spot": -3}, 5_000: {"volatility": "high"}}
    for index, change in bad.items():
        rows[index] = {**rows[index], **change}
    del rows[9_999]["strike"]
    bad[9_999] = {}

    response = alice_client.post(PRICE, {"options": rows}, format="json")

    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == n
    for index in bad:
        assert data[index]["price"] is None and data[index]["error"]["code"] == "invalid"
    assert set(data[17]["error"]["details"]["fields"]) == {"type"}
    assert set(data[404]["error"]["details"]["fields"]) == {"spot"}
    assert set(data[5_000]["error"]["details"]["fields"]) == {"volatility"}
    assert set(data[9_999]["error"]["details"]["fields"]) == {"strike"}
    good = [i for i in range(n) if i not in bad]
    expected = bsm_price(
        *(
            np.array([rows[i][f] for i in good])
            for f in ("type", "spot", "strike", "expiry", "rate", "dividend_yield", "volatility")
        )
    )
    np.testing.assert_allclose([data[i]["price"] for i in good], expected, rtol=1e-12)
    assert all("error" not in data[i] for i in good)


def test_implied_volatility_round_trips_and_explains_where_none_exists(alice_client):
    vols = [0.05, 0.2, 0.9, 5.0]
    priced = alice_client.post(
        PRICE,
        {
            "options": [{"type": "put", **HULL, "expiry": 1 / 8760, "volatility": v} for v in vols]
            + [{"type": "call", **HULL, "volatility": v} for v in vols]
        },
        format="json",
    ).json()["data"]
    prices = [row["price"] for row in priced]
    rows = [{"type": "put", **HULL, "expiry": 1 / 8760, "price": p} for p in prices[:4]]
    rows += [{"type": "call", **HULL, "price": p} for p in prices[4:]]
    rows += [
        {"type": "call", **HULL, "price": 0.5},  # under intrinsic (about 3.95)
        {"type": "call", **HULL, "price": 42.0},  # a call worth the stock
        {"type": "call", **HULL, "expiry": 0, "price": 2.0},
        {"type": "call", **HULL},  # no price
    ]

    data = alice_client.post(IV, {"options": rows}, format="json").json()["data"]

    for row, vol in zip(data[4:8], vols, strict=True):
        assert row["volatility"] == pytest.approx(vol, rel=1e-9)
    # A one-hour put out of the money at low vol may have no time value left in doubles:
    # either the exact volatility or an honest reason, never a made-up number.
    for row, vol in zip(data[:4], vols, strict=True):
        assert row["volatility"] == pytest.approx(vol, rel=1e-9) or row["reason"]
    assert data[8] == {"volatility": None, "reason": "below_intrinsic"}
    assert data[9] == {"volatility": None, "reason": "above_upper_bound"}
    assert data[10] == {"volatility": None, "reason": "no_time_value"}
    assert data[11]["reason"] == "invalid_input"
    assert data[11]["error"]["details"]["fields"] == {"price": "This field is required."}


def test_a_malformed_batch_is_400_naming_the_field(alice_client):
    for payload in ({}, {"options": "all"}, {"options": []}):
        error = error_of(alice_client.post(PRICE, payload, format="json"), 400, "invalid")
        assert "options" in error["details"]["fields"]
    too_many = {"options": [{"type": "call", **HULL, "volatility": 0.2}] * 20_001}
    error_of(alice_client.post(PRICE, too_many, format="json"), 400, "invalid")


def test_analytics_need_a_plan_that_includes_them(alice_client, acme, btc):
    _plan_override(acme, analytics=False, backtests_per_day=0)
    option = {"options": [{"type": "call", **HULL, "volatility": 0.2}]}

    responses = [
        alice_client.post(PRICE, option, format="json"),
        alice_client.post(IV, option, format="json"),
        alice_client.get(f"{BTC}/ofi"),
        alice_client.get(f"{BTC}/vpin?bucket_volume=1"),
        alice_client.get(f"{BTC}/volatility"),
    ]

    for response in responses:
        error = error_of(response, 403, "plan_required")
        assert "free" in error["details"]["plans"]  # the seeded plans include analytics


# --- OFI and VPIN: the REST history serves what the stream published -----------------------
class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: dict[str, list] = {"ofi": [], "vpin": []}

    async def publish(self, kind: str, exchange: str, symbol: str, data) -> None:
        self.sent[kind].extend(data)


def _live(btc: Instrument) -> tuple[LiveAnalytics, RecordingPublisher]:
    publisher = RecordingPublisher()
    live = LiveAnalytics(publisher=publisher, instruments=[btc])
    async_to_sync(live.start)()
    return live, publisher


def test_rest_ofi_equals_the_published_stream_and_the_batch_definition(alice_client, btc):
    rng = np.random.default_rng(8)
    n = 3_000
    start = now_ms() - 3_600_000
    start -= start % 60_000
    ts = np.sort(rng.integers(start, start + 600_000, n))
    bid = 100 + np.cumsum(rng.integers(-1, 2, n)) * 0.5
    ask = bid + 0.5 * rng.integers(1, 3, n)
    bq, aq = rng.exponential(2, n), rng.exponential(2, n)
    live, publisher = _live(btc)

    async def feed():
        for i in range(n):
            await live.book(
                BookUpdate("sim", "BTC/USD", int(ts[i]), ((bid[i], bq[i]),), ((ask[i], aq[i]),))
            )
        await live.tick(now_ms=int(ts[-1]) + 5_000)  # the clock closes the last second
        await live.store()

    async_to_sync(feed)()
    body = alice_client.get(f"{BTC}/ofi?interval=1s&start={start}&limit=10000").json()

    assert body["data"] == publisher.sent["ofi"]
    minutes = alice_client.get(f"{BTC}/ofi?interval=1m&start={start}").json()["data"]
    batch = ofi(ts, bid, bq, ask, aq, 60_000)
    assert [row["ts"] for row in minutes] == batch.start_ms.tolist()
    np.testing.assert_allclose([row["ofi"] for row in minutes], batch.ofi, rtol=1e-9, atol=1e-9)
    assert sum(row["updates"] for row in minutes) == n


def test_rest_vpin_serves_the_stream_and_computes_other_parameters_from_trades(
    alice_client, acme, btc
):
    _plan_override(acme, stream_delay_seconds=0)  # reads up to now: a real-time plan
    end = now_ms()
    end -= end % 60_000
    sim_history_load(minutes=40, seed=3, end_ms=end)
    start = end - 40 * 60_000
    rows = list(
        Trade.objects.filter(instrument=btc, ts__gte=ms_to_dt(start))
        .order_by("ts", "id")
        .values_list("ts", "price", "size")
    )
    ts = np.array([dt_to_ms(r[0]) for r in rows])
    price = np.array([r[1] for r in rows])
    size = np.array([r[2] for r in rows])
    live, publisher = _live(btc)
    bucket_volume = float(size.sum() / 70)

    async def feed():
        live._states[("sim", "BTC/USD")].vpin.bucket_volume = bucket_volume
        for i in range(ts.size):
            await live.trades(
                [TradeRecord("sim", "BTC/USD", str(i), int(ts[i]), price[i], size[i], "buy")]
            )
        await live.store()

    async_to_sync(feed)()
    assert len(publisher.sent["vpin"]) > 50

    stored = alice_client.get(f"{BTC}/vpin?start={start}&limit=10000").json()
    assert stored["source"] == "stream" and stored["bucket_volume"] == bucket_volume
    assert stored["data"] == publisher.sent["vpin"]

    computed = alice_client.get(
        f"{BTC}/vpin?bucket_volume={bucket_volume / 2}&window=20&start={start}&end={end}"
        "&limit=10000"
    ).json()
    batch = vpin(ts, price, size, bucket_volume / 2, window=20)
    assert computed["source"] == "trades"
    assert [row["ts"] for row in computed["data"]] == batch.ts_ms.tolist()
    np.testing.assert_allclose([row["buy_volume"] for row in computed["data"]], batch.buy_volume)
    got = np.array([np.nan if r["vpin"] is None else r["vpin"] for r in computed["data"]])
    np.testing.assert_allclose(got, batch.vpin)


def test_vpin_without_a_stream_needs_a_bucket_volume(alice_client, btc):
    error = error_of(alice_client.get(f"{BTC}/vpin"), 400, "invalid")
    assert "bucket_volume" in error["details"]["fields"]


def test_volatility_is_the_rolling_estimator_over_stored_candles(alice_client, acme, btc):
    _plan_override(acme, stream_delay_seconds=0)  # reads up to now: a real-time plan
    end = now_ms()
    end -= end % 60_000
    sim_history_load(minutes=45, seed=5, end_ms=end)
    start = end - 30 * 60_000

    body = alice_client.get(
        f"{BTC}/volatility?estimator=parkinson&interval=1m&window=10&start={start}&end={end}"
    ).json()

    candles = list(
        Candle1m.objects.filter(
            instrument=btc, ts__gte=ms_to_dt(start - 11 * 60_000), ts__lt=ms_to_dt(end)
        )
        .order_by("ts")
        .values_list("ts", "open", "high", "low", "close")
    )
    o, h, lo, c = (np.array([row[k] for row in candles]) for k in (1, 2, 3, 4))
    expected = volatility.parkinson(o, h, lo, c, interval_ms=60_000, window=10)
    by_ts = {dt_to_ms(row[0]): v for row, v in zip(candles, expected, strict=True)}
    assert len(body["data"]) == 30
    for row in body["data"]:
        assert row["volatility"] == pytest.approx(by_ts[row["ts"]], rel=1e-12)
    assert body["estimator"] == "parkinson" and body["window"] == 10


# --- backtests ----------------------------------------------------------------------------
def _rising_candles(instrument: Instrument, n: int) -> int:
    """n one-minute candles closing 1 % higher each minute; returns the first one's time."""
    first = now_ms() - (n + 5) * 60_000
    first -= first % 60_000
    Candle1m.objects.bulk_create(
        Candle1m(
            instrument=instrument,
            ts=ms_to_dt(first + i * 60_000),
            open=100 * 1.01**i,
            high=100 * 1.01**i,
            low=100 * 1.01**i,
            close=100 * 1.01**i,
            volume=1.0,
            trade_count=1,
            is_final=True,
        )
        for i in range(n)
    )
    return first


def _submit(client, start: int, **changes):
    request = {
        "exchange": "sim",
        "symbol": "BTC-USD",
        "interval": "1m",
        "start": start,
        "strategy": "momentum",
        "params": {"lookback": 1},
        "fee_bp": 7,
        "slippage_bp": 3,
        **changes,
    }
    return client.post("/api/v1/backtests", request, format="json")


def test_a_backtest_job_runs_to_the_known_answer(
    alice_client, btc, realtime, eager_celery, django_capture_on_commit_callbacks
):
    n = 60
    start = _rising_candles(btc, n)

    with django_capture_on_commit_callbacks(execute=True):
        response = _submit(alice_client, start)

    assert response.status_code == 202, response.content
    queued = response.json()
    assert queued["status"] == "queued" and queued["progress"] == 0
    assert response["Location"].endswith(f"/api/v1/backtests/{queued['id']}")
    job = alice_client.get(response["Location"]).json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    # Long from the second bar on: one entry cost of 10 bp, then +1 % a bar.
    total = (1.01 - 0.001) * 1.01 ** (n - 3) - 1
    assert job["result"]["metrics"]["total_return"] == pytest.approx(total, rel=1e-9)
    assert job["result"]["metrics"]["trades"] == 1
    assert job["result"]["equity"][-1][1] == pytest.approx(1 + total, rel=1e-9)
    assert job["params"]["params"] == {"lookback": 1}


def test_the_job_result_matches_the_library_on_the_same_candles(
    alice_client, btc, realtime, eager_celery, django_capture_on_commit_callbacks
):
    end = now_ms()
    end -= end % 60_000
    sim_history_load(minutes=60, seed=12, end_ms=end)
    start = end - 60 * 60_000
    params = {"fast": 3, "slow": 12}

    with django_capture_on_commit_callbacks(execute=True):
        response = _submit(
            alice_client,
            start,
            end=end,
            strategy="sma_crossover",
            params=params,
            fee_bp=5,
            slippage_bp=0,
        )
    job = alice_client.get(response["Location"]).json()

    candles = list(
        Candle1m.objects.filter(instrument=btc, ts__gte=ms_to_dt(start), ts__lt=ms_to_dt(end))
        .order_by("ts")
        .values_list("ts", "close")
    )
    expected = backtest(
        "sma_crossover",
        [dt_to_ms(t) for t, _ in candles],
        [c for _, c in candles],
        interval_ms=60_000,
        params=params,
        fee_bp=5,
    )
    assert job["status"] == "succeeded"
    for name, value in expected.metrics.items():
        assert job["result"]["metrics"][name] == pytest.approx(value, rel=1e-12), name


def test_a_job_over_an_empty_range_fails_with_a_reason(
    alice_client, btc, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _submit(alice_client, now_ms() - 3_600_000)
    job = alice_client.get(response["Location"]).json()
    assert job["status"] == "failed" and "candles" in job["error"]
    assert job["result"] is None


def test_bad_backtest_requests_are_400_naming_the_fields(alice_client, btc):
    start = now_ms() - 3_600_000
    cases = [
        ({"strategy": "martingale"}, "strategy"),
        ({"params": {"fast": 30, "slow": 10}, "strategy": "sma_crossover"}, "params"),
        ({"symbol": "DOGE-USD"}, "symbol"),
        ({"fee_bp": -1}, "fee_bp"),
        ({"end": start - 1}, "end"),
    ]
    for changes, field in cases:
        error = error_of(_submit(alice_client, start, **changes), 400, "invalid")
        assert field in error["details"]["fields"], (changes, error)
    assert not Backtest.objects.exists()


def test_the_daily_allowance_comes_from_the_plan(alice_client, acme, btc):
    _plan_override(acme, analytics=True, backtests_per_day=1)
    start = now_ms() - 3_600_000

    first = _submit(alice_client, start)
    second = _submit(alice_client, start)

    assert first.status_code == 202
    error = error_of(second, 403, "plan_required")
    assert "pro" in error["details"]["plans"]
    assert Backtest.objects.filter(organization=acme).count() == 1


def test_a_plan_without_backtests_is_refused(alice_client, acme, btc):
    _plan_override(acme, analytics=False, backtests_per_day=0)
    error_of(_submit(alice_client, now_ms() - 3_600_000), 403, "plan_required")


def test_another_organization_can_neither_see_nor_list_a_job(alice_client, mallory_client, btc):
    job_id = _submit(alice_client, now_ms() - 3_600_000).json()["id"]

    error_of(mallory_client.get(f"/api/v1/backtests/{job_id}"), 404, "not_found")
    assert mallory_client.get("/api/v1/backtests").json()["data"] == []
    listed = alice_client.get("/api/v1/backtests").json()["data"]
    assert [job["id"] for job in listed] == [job_id]


def test_backtest_list_pages_newest_first(alice_client, btc):
    start = now_ms() - 3_600_000
    ids = [_submit(alice_client, start).json()["id"] for _ in range(3)]

    first = alice_client.get("/api/v1/backtests?limit=2").json()
    second = alice_client.get(first["next"]).json()

    assert [job["id"] for job in first["data"] + second["data"]] == ids[::-1]
    assert second["next"] is None


def test_running_a_job_twice_does_not_run_it_again(alice_client, btc, realtime):
    start = _rising_candles(btc, 10)
    job_id = _submit(alice_client, start).json()["id"]

    assert backtest_run(job_id) == "succeeded"
    finished = Backtest.objects.get(pk=job_id).finished_at
    assert backtest_run(job_id) is None
    assert Backtest.objects.get(pk=job_id).finished_at == finished
