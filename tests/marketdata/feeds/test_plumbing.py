"""Group names, backoff and the feed health report (cache-backed, read by /readyz)."""

from __future__ import annotations

import random

import pytest
from channels.layers import InMemoryChannelLayer

from marketdata.feeds.backoff import Backoff
from marketdata.feeds.groups import channel_group, channel_name, group_for
from marketdata.feeds.health import StreamHealth, feed_health, health_store, readiness_register
from marketdata.models import Exchange, Instrument


@pytest.mark.parametrize(
    ("kind", "exchange", "symbol"),
    [
        ("trades", "sim", "BTC/USD"),
        ("book", "binance", "BTC/USDT"),
        ("candles_1m", "binance", "BTC/USDT:USDT"),  # a derivative's settle currency
        ("ticker", "kraken", "XBT/USD " + "X" * 120),  # absurdly long
    ],
)
def test_every_channel_maps_to_a_group_name_channels_accepts(kind, exchange, symbol):
    group = group_for(kind, exchange, symbol)
    assert InMemoryChannelLayer().require_valid_group_name(group)


def test_public_channel_names_follow_the_api_contract():
    assert channel_name("trades", "sim", "BTC/USD") == "trades.sim.BTC-USD"
    assert channel_group("trades.sim.BTC-USD") == "trades.sim.BTC-USD"


def test_distinct_long_channels_stay_distinct_groups():
    a = group_for("trades", "binance", "A" * 120 + "/USD")
    b = group_for("trades", "binance", "A" * 120 + "/EUR")
    assert a != b


def test_backoff_grows_exponentially_is_capped_and_jittered():
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert max(delays) <= 8.0
    assert len(set(delays)) == len(delays)  # jitter: no two attempts in lock-step
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@pytest.fixture
def sim_btc(db):
    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Sim"})
    return Instrument.objects.update_or_create(
        exchange=exchange,
        ccxt_symbol="BTC/USD",
        defaults={"base": "BTC", "quote": "USD", "price_precision": 1, "size_precision": 1},
    )[0]


def test_health_is_unknown_until_a_runner_reports(sim_btc):
    assert feed_health("sim")["sim"]["state"] == "unknown"


def test_health_reports_connected_streams_with_counters(sim_btc):
    trades = StreamHealth(exchange="sim", kind="trades", symbol="BTC/USD")
    trades.message(5)
    trades.gaps_repaired = 2
    book = StreamHealth(exchange="sim", kind="book", symbol="BTC/USD")
    health_store([trades, book])

    report = feed_health("sim")["sim"]
    assert report["state"] == "degraded"  # the book stream has not received anything
    assert report["connected"] is True
    assert report["gaps_repaired"] == 2
    assert report["last_message_age_ms"] < 5_000
    assert {s["kind"] for s in report["streams"]} == {"trades", "book"}


def test_readyz_fails_when_every_reporting_feed_is_down(sim_btc, client, monkeypatch, settings):
    from quantsaas import health

    settings.READYZ_TOKEN = "monitoring"  # the per-check report is for operators only
    client.defaults["HTTP_X_READYZ_TOKEN"] = "monitoring"
    monkeypatch.setattr(health, "_extra_checks", {})  # registered for this test only
    readiness_register()
    stream = StreamHealth(exchange="sim", kind="trades", symbol="BTC/USD")
    health_store([stream])  # reported, never connected
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["feeds"]["exchanges"]["sim"] == "down"

    stream.message()
    health_store([stream])
    health.readiness_cache_clear()  # answers are cached for a couple of seconds
    response = client.get("/readyz")
    assert response.json()["checks"]["feeds"]["ok"] is True
