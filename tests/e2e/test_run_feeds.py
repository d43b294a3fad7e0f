"""`run_feeds --exchange sim` as a real process; its trades read back through the REST API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.services.api_keys import api_key_create
from marketdata.feeds.health import feed_health
from marketdata.models import Exchange, Instrument, Trade
from tests.factories import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    """The test database (pytest-django's test_<name>), as a URL for the child process."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def sim_instruments(transactional_db):
    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Simulated"})
    Instrument.objects.exclude(exchange=exchange).update(active=False)
    for base, tick, step in (("BTC", "0.01", "0.0001"), ("ETH", "0.01", "0.001")):
        Instrument.objects.update_or_create(
            exchange=exchange,
            ccxt_symbol=f"{base}/USD",
            defaults={
                "symbol": f"{base}-USD",
                "base": base,
                "quote": "USD",
                "price_precision": Decimal(tick),
                "size_precision": Decimal(step),
                "active": True,
            },
        )
    Instrument.objects.filter(exchange=exchange, ccxt_symbol="SOL/USD").update(active=False)


def _wait_for(condition, seconds: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run_feeds exited early with {proc.returncode}"
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_feeds_on_sim_stores_trades_readable_through_the_api(sim_instruments, alice, acme):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SIM_SPEED": "1",  # real time: trade timestamps are "now", as the API expects
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_feeds", "--exchange", "sim"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so cleanup reaches every child
    )
    try:
        btc = Instrument.objects.get(exchange_id="sim", ccxt_symbol="BTC/USD")
        _wait_for(
            lambda: Trade.objects.filter(instrument=btc).count() >= 10, 60, "stored trades", proc
        )
        health = _wait_for(
            lambda: feed_health("sim")["sim"]["connected"] and feed_health("sim"),
            15,
            "feed health",
            proc,
        )

        plan_grant(organization=acme)  # real time: the free plan's delay would hide them
        created = api_key_create(organization=acme, created_by=alice, name="e2e")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
        response = client.get("/api/v1/markets/sim/BTC-USD/trades", {"limit": 1000})
        assert response.status_code == 200, response.content
        trades = response.json()["data"]
        stored = list(
            Trade.objects.filter(instrument=btc)
            .order_by("ts", "id")
            .values_list("trade_id", flat=True)
        )
        assert [t["id"] for t in trades] == stored[: len(trades)]
        assert len(trades) >= 10
        assert all(
            t["side"] in ("buy", "sell") and t["price"] > 0 and t["size"] > 0 for t in trades
        )
        assert [t["ts"] for t in trades] == sorted(t["ts"] for t in trades)
        assert health["sim"]["state"] in ("ok", "degraded")

        # A clean stop on SIGTERM: buffered trades flushed, exit status 0.
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
        output = proc.stdout.read().decode()
        assert "feed runner stopped" in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
