"""A dead feed runner reads as down within seconds, on /readyz and GET /api/v1/exchanges."""

from __future__ import annotations

import time

import pytest

from marketdata.feeds.health import HEALTH_TTL_SECONDS, StreamHealth, feed_health, health_store
from quantsaas import health as readiness

pytestmark = pytest.mark.django_db

TOKEN = "readyz-test-token"


def _report_alive() -> None:
    streams = [StreamHealth(exchange="sim", kind=k, symbol="BTC/USD") for k in ("trades", "book")]
    for stream in streams:
        stream.message()
    health_store(streams)


def _exchange_status(client) -> str:
    response = client.get("/api/v1/exchanges")
    assert response.status_code == 200
    return next(e for e in response.json()["data"] if e["id"] == "sim")["status"]["state"]


def test_a_runner_that_stops_reporting_reads_down_within_seconds(alice_client, client, settings):
    settings.READYZ_TOKEN = TOKEN
    _report_alive()
    assert feed_health("sim")["sim"]["state"] == "ok"
    assert _exchange_status(alice_client) == "ok"
    died = time.monotonic()

    # The runner is gone: nothing writes any more. Within a few seconds it reads as down,
    # not "unknown" (which means no runner ever reported) and certainly not "ok".
    time.sleep(HEALTH_TTL_SECONDS + 0.5)
    readiness.readiness_cache_clear()
    report = feed_health("sim")["sim"]
    assert report["state"] == "down"
    assert report["connected"] is False
    assert _exchange_status(alice_client) == "down"
    ready = client.get("/readyz", HTTP_X_READYZ_TOKEN=TOKEN)
    assert ready.status_code == 503
    assert ready.json()["checks"]["feeds"]["exchanges"]["sim"] == "down"
    assert time.monotonic() - died < 5


def test_a_runner_that_reports_again_reads_ok_again(alice_client):
    _report_alive()
    time.sleep(HEALTH_TTL_SECONDS + 0.5)
    assert feed_health("sim")["sim"]["state"] == "down"
    _report_alive()
    assert _exchange_status(alice_client) == "ok"
