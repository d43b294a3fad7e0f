"""Dependency outages, in process: every endpoint degrades the same way.

Redis unreachable: reads that PostgreSQL can answer are answered (ticker, book, the
exchange list), and the rate limit falls back to a per-process limit. A database or
Redis failure anywhere else answers 503 `unavailable` in the error shape with
Retry-After, never a 500. (tests/faults/ stops real servers under real processes.)
"""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError

from billing.ratelimit import rate_limit_hit
from marketdata.sim.history import sim_history_load
from tests.e2e.stream_servers import free_port
from tests.factories import plan_grant, plan_override_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down(settings):
    """Every Redis client of the web process points at a port nothing listens on."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = dead
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": dead,
        }
    }
    return dead


@pytest.fixture
def stored_market(acme):
    plan_grant(organization=acme, code="pro")  # real time: the live state is what it reads
    sim_history_load(minutes=2, seed=1)  # trades, candles, a book snapshot and a ticker


def _unavailable(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) > 0


def test_with_redis_down_ticker_book_and_exchanges_come_from_postgresql(
    stored_market, alice_client, redis_down
):
    ticker = alice_client.get("/api/v1/markets/sim/BTC-USD/ticker")
    book = alice_client.get("/api/v1/markets/sim/BTC-USD/book")
    exchanges = alice_client.get("/api/v1/exchanges")
    trades = alice_client.get("/api/v1/markets/sim/BTC-USD/trades")

    assert ticker.status_code == 200, ticker.content[:300]
    assert ticker.json()["last"] > 0
    assert book.status_code == 200, book.content[:300]
    assert book.json()["bids"] and book.json()["asks"]
    assert exchanges.status_code == 200, exchanges.content[:300]
    sim = next(e for e in exchanges.json()["data"] if e["id"] == "sim")
    assert sim["status"]["state"] == "unknown"  # health lives in Redis: not known now
    assert trades.status_code == 200


def test_with_redis_down_the_rate_limit_is_per_process_not_unlimited(acme, redis_down, settings):
    settings.RATE_LIMIT_OUTAGE_PROCESSES = 2
    plan_override_with(organization=acme, requests_per_minute=10)
    answers = [rate_limit_hit(organization=acme) for _ in range(8)]

    assert [a.allowed for a in answers] == [True] * 5 + [False] * 3
    assert answers[0].limit == 5 and answers[4].remaining == 0


def test_with_redis_down_the_api_refuses_beyond_the_fallback_limit(
    acme, alice_client, redis_down, settings
):
    settings.RATE_LIMIT_OUTAGE_PROCESSES = 1
    plan_override_with(organization=acme, requests_per_minute=3)
    codes = [alice_client.get("/api/v1/exchanges").status_code for _ in range(5)]

    assert codes == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("error", [OperationalError("connection refused"), RedisConnectionError()])
def test_an_outage_inside_a_view_is_503_unavailable(alice_client, monkeypatch, error):
    from marketdata import selectors

    def fails(**kwargs):
        raise error

    monkeypatch.setattr(selectors, "exchanges_list", fails)
    _unavailable(alice_client.get("/api/v1/exchanges"))


def test_an_outage_before_any_view_is_503_unavailable_too(alice, acme, monkeypatch):
    # The organization middleware reads the database before DRF runs.
    from accounts import middleware

    def fails(*args, **kwargs):
        raise OperationalError("the database is down")

    client = Client(raise_request_exception=False)
    client.force_login(alice)
    monkeypatch.setattr(middleware.CurrentOrganizationMiddleware, "__call__", fails)
    response = client.get("/api/v1/exchanges")

    _unavailable(response)
    assert "database is down" not in response.content.decode()
