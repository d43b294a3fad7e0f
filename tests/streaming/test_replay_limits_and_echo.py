"""A replay older than the plan's history is refused with the boundary; channel lists
echoed back are cut to ECHO_CHANNELS with the full count, so a frame stays small.

Through the real consumer, hub and Redis.
"""

from __future__ import annotations

import asyncio
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


async def test_replayed_frames_count_in_the_days_stream_messages(
    sim_market, alice, acme, monkeypatch
):
    """A replay is data delivered like the live stream: each frame counts in usage (the
    usage page and the plan's daily figures), its closing `replay_end` does not."""
    from datetime import UTC, datetime

    from asgiref.sync import sync_to_async

    from billing.usage import usage_live
    from marketdata.models import Trade
    from marketdata.streaming import hub as hub_module

    monkeypatch.setattr(hub_module, "USAGE_FLUSH_SECONDS", 0.5)
    await sync_to_async(plan_grant)(acme, code="replayer", history_days=30)
    key = (await sync_to_async(api_key_create)(organization=acme, created_by=alice)).raw_key
    start = int(time.time() * 1000) - 600_000
    instrument = await Instrument.objects.aget(exchange=sim_market, symbol="BTC-USD")
    await Trade.objects.abulk_create(
        Trade(
            instrument=instrument,
            trade_id=str(i),
            ts=datetime.fromtimestamp((start + i * 1000) / 1000, tz=UTC),
            received_ts=datetime.fromtimestamp((start + i * 1000) / 1000, tz=UTC),
            price=100.0 + i,
            size=1.0,
            side="buy",
        )
        for i in range(120)
    )
    comm = await connected(key=key)
    assert (await receive(comm))["type"] == "welcome"
    await comm.send_json_to(
        {"op": "replay", "channel": TRADES, "from": start, "to": start + 200_000, "speed": 0}
    )
    frames, records = 0, 0
    while True:
        frame = await receive_until(comm, lambda f: f["type"] != "heartbeat", 10)
        if frame["type"] == "replay_end":
            break
        assert frame["type"] == "replay", frame
        frames, records = frames + 1, records + len(frame["data"])
    assert records == frame["count"] == 120 and frames >= 1

    today = datetime.now(UTC).date()
    counted, deadline = 0, time.monotonic() + 5
    while counted < frames and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        counted = (await sync_to_async(usage_live)(organization=acme, day=today))["stream_messages"]
    assert counted == frames
    await comm.disconnect()
