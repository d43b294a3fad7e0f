"""A replay older than the plan's history is refused with the boundary; channel lists
echoed back are cut to ECHO_CHANNELS with the full count, so a frame stays small.

Through the real consumer, hub and Redis.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from accounts.services.api_keys import api_key_create
from marketdata.models import Instrument
from marketdata.streaming.consumer import ECHO_CHANNELS
from tests.streaming.conftest import connected, plan_grant, receive, receive_until

pytestmark = pytest.mark.django_db(transaction=True)

TRADES = "trades.sim.BTC-USD"
DAY_MS = 86_400_000
WIDE = ECHO_CHANNELS + 10


@pytest.fixture
def one_day_key(sim_market, alice, acme) -> str:
    plan_grant(acme, code="one-day", history_days=1)
    return api_key_create(organization=acme, created_by=alice).raw_key


@pytest.fixture
def wide_key(sim_market, alice, acme) -> str:
    """A plan allowing more subscriptions than are echoed, and that many instruments."""
    for i in range(WIDE):
        Instrument.objects.create(
            exchange=sim_market,
            symbol=f"C{i}-USD",
            ccxt_symbol=f"C{i}/USD",
            base=f"C{i}",
            quote="USD",
            price_precision=Decimal("0.01"),
            size_precision=Decimal("0.001"),
            active=True,
        )
    plan_grant(acme, code="wide", ws_subscriptions=WIDE * 2)
    return api_key_create(organization=acme, created_by=alice).raw_key


async def test_a_replay_older_than_the_plans_history_is_refused_with_the_boundary(one_day_key):
    comm = await connected(key=one_day_key)
    assert (await receive(comm))["type"] == "welcome"
    now = int(time.time() * 1000)
    await comm.send_json_to(
        {"op": "replay", "channel": TRADES, "from": now - 3 * DAY_MS, "to": now - 2 * DAY_MS}
    )
    error = await receive_until(comm, lambda f: f["type"] == "error")
    assert error["code"] == "plan_required", error
    assert abs(error["details"]["oldest_ms"] - (now - DAY_MS)) < 60_000, error
    # Refused, not closed: the connection goes on.
    await comm.send_json_to({"op": "ping"})
    assert (await receive_until(comm, lambda f: f["type"] != "heartbeat"))["type"] == "pong"
    await comm.disconnect()


async def test_echoed_channel_lists_are_cut_and_say_how_many_there_were(wide_key):
    channels = [f"trades.sim.C{i}-USD" for i in range(WIDE)]
    comm = await connected(key=wide_key)
    assert (await receive(comm))["type"] == "welcome"

    await comm.send_json_to({"op": "subscribe", "channels": channels})
    subscribed = await receive_until(comm, lambda f: f["type"] == "subscribed", 10)
    assert subscribed["channels"] == channels[:ECHO_CHANNELS]
    assert subscribed["count"] == WIDE

    await comm.send_json_to({"op": "unsubscribe", "channels": channels})
    unsubscribed = await receive_until(comm, lambda f: f["type"] == "unsubscribed", 10)
    assert len(unsubscribed["channels"]) == ECHO_CHANNELS
    assert unsubscribed["count"] == WIDE
    await comm.disconnect()
