"""PostgreSQL stopped for 15 s under the real web process and feed runner.

The test owns its PostgreSQL cluster (servers.own_postgres) so it can stop it. While it
is down every REST answer comes within 3 s and is either served (from what Redis and
memory hold) or 503 `unavailable` in the JSON error shape with Retry-After, never a 500
or an HTML page; /readyz answers 503 within 3 s every time. After PostgreSQL returns the
API recovers by itself and the stored tape is complete: the feed buffered its trades.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from marketdata.sim.tape import SimTape
from quantsaas.timeutil import now_ms
from tests.e2e.stream_servers import ROOT, free_port
from tests.faults.servers import feed_runner, own_postgres, wait_for, web

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SEED = "13"
DOWN_SECONDS = 15
TOKEN = "faults-monitor"
PATHS = (
    "/api/v1/exchanges",
    "/api/v1/markets/sim/BTC-USD/trades",
    "/api/v1/markets/sim/BTC-USD/candles",
    "/api/v1/markets/sim/BTC-USD/ticker",
    "/api/v1/markets/sim/BTC-USD/book",
)
SETUP = """
from accounts.services.api_keys import api_key_create
from marketdata.models import Instrument
from tests.factories import OrganizationFactory, UserFactory, plan_grant

Instrument.objects.exclude(exchange_id="sim", ccxt_symbol="BTC/USD").update(active=False)
user = UserFactory(email="ops@faults.test")
organization = OrganizationFactory(owner=user)
plan_grant(organization=organization, code="pro")
print(api_key_create(organization=organization, created_by=user).raw_key)
"""


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_postgres_stopped_for_15_s_answers_503_fast_and_loses_no_trade():
    with own_postgres() as pg:
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "SIM_SPEED": "1",
            "SIM_SEED": SEED,
            "READYZ_TOKEN": TOKEN,
            "DB_STATEMENT_TIMEOUT_MS": "5000",  # as the Procfile runs the web process
            "DB_POOL_TIMEOUT": "2",  # production's (the suite's own default is longer)
        }
        _manage(env, "migrate", "-v0")
        key = _manage(env, "shell", "-c", SETUP).splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        session.headers["X-API-Key"] = key

        def get(path: str, **params) -> tuple[requests.Response, float]:
            started = time.monotonic()
            response = session.get(base + path, params=params, timeout=10)
            return response, time.monotonic() - started

        def trades(**params) -> list[dict]:
            try:
                response, _ = get(PATHS[1], limit=10_000, **params)
            except requests.ConnectionError:  # the web process is still starting
                return []
            return response.json()["data"] if response.status_code == 200 else []

        server = web(env, port)
        feeds = feed_runner(env)
        try:
            first = wait_for(lambda: trades(), seconds=40, what="trades through the API")[0]
            time.sleep(1)

            pg.stop()
            stopped = time.monotonic()
            stopped_ms = now_ms()
            seen: dict[str, set[int]] = {path: set() for path in PATHS}
            while time.monotonic() - stopped < DOWN_SECONDS:
                for path in PATHS:
                    response, elapsed = get(path)
                    assert elapsed < 3, (path, elapsed)
                    seen[path].add(response.status_code)
                    assert response.status_code in (200, 503), (path, response.text[:300])
                    if response.status_code == 503:
                        assert response.headers["Content-Type"].startswith("application/json")
                        assert response.json()["error"]["code"] == "unavailable"
                        assert int(response.headers["Retry-After"]) > 0
                ready, elapsed = get("/readyz")
                assert elapsed < 3, ("/readyz", elapsed)
                assert ready.status_code == 503
                assert ready.json() == {"status": "unavailable"}
                time.sleep(0.3)
            # What needs PostgreSQL said so; the rest was served from Redis and memory.
            assert 503 in seen[PATHS[1]] and 503 in seen[PATHS[0]], seen
            assert feeds.alive() and server.alive()

            pg.start()
            restarted_ms = now_ms()
            end = restarted_ms + 3_000
            wait_for(lambda: get(PATHS[0])[0].status_code == 200, seconds=20, what="the API back")
            wait_for(
                lambda: trades(start=end) and trades(start=end)[-1]["ts"] > end + 1_000,
                seconds=30,
                what="trades after PostgreSQL returned",
            )
            ready, _ = get("/readyz")
            assert ready.status_code == 200
            # The stored tape, read until it answers: this test polls hard, and a 429 (or a
            # last 503) must not pass for an empty tape.
            deadline = time.monotonic() + 20
            while (
                response := get(PATHS[1], limit=10_000, start=first["ts"], end=end)[0]
            ).status_code != 200:
                assert time.monotonic() < deadline, response.text[:300]
                time.sleep(float(response.headers.get("Retry-After", "1")))
            stored = response.json()["data"]

            # A restart nobody saw (no request meanwhile): the pool's idle connections are
            # dead, and the first request after it must not be handed one.
            pg.stop()
            time.sleep(1)
            pg.start()
            response, _ = get(PATHS[1], limit=1)
            assert response.status_code == 200, response.text[:300]
        finally:
            feeds.stop()
            server.stop()

    market = SimTape(seed=int(SEED)).trades("BTC/USD", since=first["ts"], until=end, limit=10**7)
    during = [t for t in market if stopped_ms <= t.ts < restarted_ms]
    assert during, "the market traded while PostgreSQL was down"
    assert [(t["id"], t["ts"], t["price"], t["size"], t["side"]) for t in stored] == [
        (t.trade_id, t.ts, t.price, t.size, t.side)
        for t in sorted(market, key=lambda t: (t.ts, t.trade_id))
    ]
