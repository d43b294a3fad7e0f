"""Delayed plans over REST: nothing newer than `now - stream_delay_seconds`, on every endpoint.

The free plan streams 15 minutes late; its REST answers must not be a way around that.
A pro organization reading the same stored tape sees the newest data.
"""

from __future__ import annotations

import pytest

from analytics.models import OfiSecond, VpinBucket
from billing.entitlements import entitlements_for
from billing.models import Plan, PlanOverride
from marketdata.models import BookSnapshot, Instrument, Trade
from marketdata.sim.history import sim_history_load
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, ms_to_dt, now_ms

BTC = "sim/BTC-USD"
MARKETS = f"/api/v1/markets/{BTC}"
ANALYTICS = f"/api/v1/analytics/{BTC}"
VPIN_PARAMS = {"bucket_volume": 5.0, "window": 50, "bar_ms": 60_000}


@pytest.fixture
def tape(db) -> dict:
    """Half an hour of stored market data ending at the current minute.

    Two simulator runs: the first ends 20 minutes ago, leaving a book snapshot there; the
    second runs up to now, leaving the newest snapshot and ticker. A delayed reader (cutoff
    15 minutes ago) must see the first snapshot, a real-time reader the second. Stored OFI
    seconds and VPIN buckets cover the same half hour, as the live analytics would leave them.
    """
    end = now_ms() - now_ms() % MINUTE_MS
    older_end = end - 20 * MINUTE_MS
    sim_history_load(minutes=10, seed=1, end_ms=older_end)
    sim_history_load(minutes=20, seed=2, end_ms=end)
    btc = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    start = end - 30 * MINUTE_MS
    OfiSecond.objects.bulk_create(
        OfiSecond(instrument=btc, ts=ms_to_dt(ts), ofi=(ts // 1000) % 7 - 3.0, updates=3)
        for ts in range(start, end, 5_000)
    )
    VpinBucket.objects.bulk_create(
        VpinBucket(
            instrument=btc,
            ts=ms_to_dt(ts + 1_234),
            buy_volume=3.0,
            sell_volume=2.0,
            vpin=0.2,
            **VPIN_PARAMS,
        )
        for ts in range(start, end, 20_000)
    )
    return {"end": end, "older_end": older_end, "instrument": btc}


@pytest.fixture
def pro_client(mallory_client, globex):
    PlanOverride.objects.create(
        organization=globex, plan=Plan.objects.get(code="pro"), reason="test"
    )
    assert entitlements_for(organization=globex).stream_delay_seconds == 0
    return mallory_client


def delay_ms(organization) -> int:
    return entitlements_for(organization=organization).stream_delay_seconds * 1000


def timed_get(client, url: str, delay: int):
    """GET, with the bounds of the cutoff the server used: [before, after)."""
    before = now_ms() - delay
    response = client.get(url)
    after = now_ms() - delay + 1
    assert response.status_code == 200, response.content
    return response, before, after


def newest_trade_before(instrument: Instrument, cutoff: int) -> tuple[int, float]:
    ts, price = (
        Trade.objects.filter(instrument=instrument, ts__lt=ms_to_dt(cutoff))
        .order_by("-ts", "-id")
        .values_list("ts", "price")
        .first()
    )
    return dt_to_ms(ts), price


def test_the_free_plan_reads_fifteen_minutes_late_and_says_so(acme, alice_client, tape):
    delay = delay_ms(acme)
    assert delay == 900_000

    response, before, after = timed_get(alice_client, f"{MARKETS}/trades?limit=10000", delay)
    trades = response.json()["data"]
    assert response["X-Data-Delay"] == "900"
    assert trades and all(t["ts"] < after for t in trades)
    assert trades[-1]["ts"] >= newest_trade_before(tape["instrument"], before)[0]


def test_a_delayed_plan_sees_nothing_newer_than_the_cutoff_on_any_endpoint(
    acme, alice_client, tape
):
    delay, btc = delay_ms(acme), tape["instrument"]

    # An explicit `end` in the future is clamped too.
    url = f"{MARKETS}/trades?start={tape['end'] - 30 * MINUTE_MS}&end={now_ms()}&limit=10000"
    response, before, after = timed_get(alice_client, url, delay)
    assert response["X-Data-Delay"] == "900"
    trades = response.json()["data"]
    assert trades and max(t["ts"] for t in trades) < after

    response, before, after = timed_get(alice_client, f"{MARKETS}/candles?interval=1m", delay)
    minutes = response.json()["data"]
    assert response["X-Data-Delay"] == "900"
    # Only whole minutes before the cutoff: the one in progress there holds later trades.
    assert minutes and all(c["ts"] + MINUTE_MS <= after for c in minutes)
    assert minutes[-1]["ts"] + MINUTE_MS >= before - before % MINUTE_MS

    response, before, after = timed_get(alice_client, f"{MARKETS}/candles?interval=1h", delay)
    hours = response.json()["data"]
    assert hours and all(c["ts"] < after for c in hours)
    assert hours[-1]["final"] is (hours[-1]["ts"] + 3_600_000 <= before - before % MINUTE_MS)

    response, before, after = timed_get(alice_client, f"{MARKETS}/book?depth=5", delay)
    book = response.json()
    assert response["X-Data-Delay"] == "900"
    assert book["ts"] == tape["older_end"] < before  # the snapshot before the cutoff
    stored = BookSnapshot.objects.get(instrument=btc, ts=ms_to_dt(tape["older_end"]))
    assert book["bids"] == [list(level) for level in stored.bids[:5]]

    response, before, after = timed_get(alice_client, f"{MARKETS}/ticker", delay)
    ticker = response.json()
    assert response["X-Data-Delay"] == "900"
    assert ticker["ts"] < after
    assert (ticker["ts"], ticker["last"]) == newest_trade_before(btc, ticker["ts"] + 1)
    assert ticker["ts"] >= newest_trade_before(btc, before)[0]
    assert (ticker["bid"], ticker["ask"]) == (stored.bids[0][0], stored.asks[0][0])
    assert ticker["high_24h"] >= ticker["last"] >= ticker["low_24h"] > 0
    assert ticker["volume_24h"] > 0

    response, before, after = timed_get(alice_client, f"{ANALYTICS}/ofi?interval=1s", delay)
    ofi = response.json()["data"]
    assert response["X-Data-Delay"] == "900"
    assert ofi and all(row["ts"] + 1_000 <= after for row in ofi)
    assert ofi[-1]["ts"] >= before - 5_000 - 1_000

    response, before, after = timed_get(alice_client, f"{ANALYTICS}/vpin", delay)
    vpin = response.json()
    assert response["X-Data-Delay"] == "900" and vpin["source"] == "stream"
    assert vpin["data"] and all(row["ts"] < after for row in vpin["data"])
    assert vpin["data"][-1]["ts"] >= before - 20_000

    url = f"{ANALYTICS}/vpin?bucket_volume=1&window=5"  # computed from trades
    response, before, after = timed_get(alice_client, url, delay)
    assert all(row["ts"] < after for row in response.json()["data"])

    url = f"{ANALYTICS}/volatility?interval=1m&window=5"
    response, before, after = timed_get(alice_client, url, delay)
    volatility = response.json()["data"]
    assert response["X-Data-Delay"] == "900"
    assert volatility and all(row["ts"] + MINUTE_MS <= after for row in volatility)


def test_a_real_time_plan_reads_the_newest_data_without_a_delay_header(pro_client, tape):
    btc, end = tape["instrument"], tape["end"]
    newest_trade = Trade.objects.filter(instrument=btc).order_by("-ts", "-id").first()

    # The last minutes, so the page holds them whatever the tape's size (about 10,000
    # trades an hour, depending on where the sim's 10-minute segments fall).
    trades = pro_client.get(f"{MARKETS}/trades?start={end - 2 * MINUTE_MS}&limit=10000")
    assert "X-Data-Delay" not in trades
    assert trades.json()["data"][-1]["id"] == newest_trade.trade_id

    minutes = pro_client.get(f"{MARKETS}/candles?interval=1m").json()["data"]
    assert minutes[-1]["ts"] == end - MINUTE_MS

    book = pro_client.get(f"{MARKETS}/book")
    assert "X-Data-Delay" not in book and book.json()["ts"] == end

    ticker = pro_client.get(f"{MARKETS}/ticker").json()
    assert ticker["ts"] == end

    ofi = pro_client.get(f"{ANALYTICS}/ofi?interval=1s").json()["data"]
    assert ofi[-1]["ts"] == end - 5_000

    vpin = pro_client.get(f"{ANALYTICS}/vpin").json()["data"]
    assert vpin[-1]["ts"] == end - 20_000 + 1_234


def test_a_delayed_plan_gets_404_when_nothing_was_stored_before_the_delay(
    alice_client, pro_client, db
):
    end = now_ms() - now_ms() % MINUTE_MS
    sim_history_load(minutes=10, seed=3, end_ms=end)  # all of it newer than the cutoff

    for endpoint in ("book", "ticker"):
        response = alice_client.get(f"{MARKETS}/{endpoint}")
        assert response.status_code == 404, response.content
        error = response.json()["error"]
        assert error["code"] == "not_found" and "delayed" in error["message"]
        assert response["X-Data-Delay"] == "900"
        assert pro_client.get(f"{MARKETS}/{endpoint}").status_code == 200

    trades = alice_client.get(f"{MARKETS}/trades?start={end - 10 * MINUTE_MS}")
    assert trades.status_code == 200 and trades.json()["data"] == []
    assert pro_client.get(f"{MARKETS}/trades?start={end - 10 * MINUTE_MS}").json()["data"]


def test_a_pro_organization_downgraded_to_free_reads_delayed_data_at_once(globex, pro_client, tape):
    assert "X-Data-Delay" not in pro_client.get(f"{MARKETS}/book")

    PlanOverride.objects.filter(organization=globex).delete()

    book = pro_client.get(f"{MARKETS}/book")
    assert book["X-Data-Delay"] == "900" and book.json()["ts"] == tape["older_end"]
