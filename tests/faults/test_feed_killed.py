"""The feed runner killed with SIGKILL for 20 s, then restarted: nothing is lost.

The stored sim tape over the whole period (before the kill, the 20 s the runner was dead,
after the restart) equals the deterministic market's tape, trade for trade (ids, prices,
sizes, timestamps): gap repair regenerated the hole from the venue's REST history. While
it is dead, /readyz and GET /api/v1/exchanges say `down` within 5 s.
"""

from __future__ import annotations

import os
import time

import pytest

from marketdata.models import Exchange, Instrument, Trade
from marketdata.sim.tape import SimTape
from quantsaas import health
from quantsaas.timeutil import dt_to_ms, now_ms
from tests.e2e.stream_servers import database_url
from tests.faults.servers import feed_runner, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

SEED = "18"
SYMBOL = "BTC/USD"
DOWN_SECONDS = 20
TOKEN = "faults-monitor"


@pytest.fixture
def sim_btc_only(transactional_db) -> Instrument:
    Instrument.objects.exclude(exchange_id="sim", ccxt_symbol=SYMBOL).update(active=False)
    Exchange.objects.filter(id="sim").update(enabled=True)
    return Instrument.objects.get(exchange_id="sim", ccxt_symbol=SYMBOL)


def _stored(instrument: Instrument) -> list[tuple]:
    return [
        (trade_id, dt_to_ms(ts), price, size, side)
        for trade_id, ts, price, size, side in Trade.objects.filter(instrument=instrument)
        .order_by("ts", "trade_id")
        .values_list("trade_id", "ts", "price", "size", "side")
    ]


def _newest_ms(instrument: Instrument) -> int:
    newest = Trade.objects.filter(instrument=instrument).order_by("-ts").first()
    return dt_to_ms(newest.ts) if newest else 0


def _feed_state(client) -> str | None:
    health.readiness_cache_clear()  # the test measures the health data, not the 2 s cache
    body = client.get("/readyz", HTTP_X_READYZ_TOKEN=TOKEN).json()
    return body["checks"]["feeds"]["exchanges"].get("sim")


def test_a_feed_killed_for_20_s_leaves_no_hole_and_reads_down_promptly(
    sim_btc_only, alice_client, client, settings
):
    settings.READYZ_TOKEN = TOKEN
    env = {**os.environ, "DATABASE_URL": database_url(), "SIM_SPEED": "1", "SIM_SEED": SEED}
    feeds = feed_runner(env)
    try:
        wait_for(lambda: _stored(sim_btc_only), seconds=30, what="the first stored trades")
        wait_for(lambda: _feed_state(client) == "ok", seconds=10, what="feed health ok")
        time.sleep(2)

        feeds.kill()  # SIGKILL: no shutdown code runs, health is not written as down
        killed = time.monotonic()
        wait_for(lambda: _feed_state(client) == "down", seconds=5, what="/readyz: feed down")
        readyz_down_after = time.monotonic() - killed
        exchanges = alice_client.get("/api/v1/exchanges").json()["data"]
        assert next(e for e in exchanges if e["id"] == "sim")["status"]["state"] == "down"
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 503 and anonymous.json() == {"status": "unavailable"}

        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - killed)))
        restarted_ms = now_ms()
        feeds = feed_runner(env)
        end = restarted_ms + 3_000
        wait_for(
            lambda: _newest_ms(sim_btc_only) > end + 1_000,
            seconds=30,
            what="trades after the restart",
        )
        wait_for(lambda: _feed_state(client) == "ok", seconds=10, what="feed health ok again")
    finally:
        feeds.stop()

    stored = _stored(sim_btc_only)
    first = stored[0][1]
    market = SimTape(seed=int(SEED)).trades(SYMBOL, since=first, until=end, limit=10**7)
    expected = sorted(
        ((t.trade_id, t.ts, t.price, t.size, t.side) for t in market), key=lambda r: (r[1], r[0])
    )
    window = [row for row in stored if row[1] < end]
    hole = [row for row in expected if restarted_ms - DOWN_SECONDS * 1000 <= row[1] < restarted_ms]

    assert hole, "the market traded while the feed was dead"
    assert window == expected  # no hole, no duplicate, no foreign trade
    assert readyz_down_after < 5
