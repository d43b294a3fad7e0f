"""A plan change re-applied to open connections (marketdata/streaming/recheck.py).

Fewer connections: the newest beyond the new limit are closed with 4008 and the
oldest stay. Fewer subscriptions: the newest beyond the limit are dropped with a
``quota_exceeded`` error and the connection stays. Which connections are beyond
is read from the shared slot set, so a second process holding some of the
organization's slots reaches the same answer and each closes only its own.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from accounts.services.api_keys import api_key_create
from marketdata.feeds.publish import Publisher
from marketdata.streaming import hub as hub_module
from marketdata.streaming.hub import hub_peek
from marketdata.streaming.quotas import LocalSlots, RedisSlots
from tests.streaming.conftest import (
    close_message,
    closed_with,
    connected,
    plan_grant,
    plan_subscribe,
    receive,
    receive_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

BTC, ETH, BOOK = "trades.sim.BTC-USD", "trades.sim.ETH-USD", "book.sim.BTC-USD"
RECHECK_SECONDS = 0.2


@pytest.fixture(autouse=True)
def quick_recheck(monkeypatch):
    monkeypatch.setattr(hub_module, "RECHECK_SECONDS", RECHECK_SECONDS)
    monkeypatch.setattr(hub_module, "MAINTENANCE_SECONDS", RECHECK_SECONDS / 2)


@pytest.fixture
async def other_process():
    """A second daphne process's view of the same slot sets."""
    slots = RedisSlots(settings.REDIS_URL)
    yield slots
    await slots.aclose()


async def new_key(organization, user) -> str:
    created = await sync_to_async(api_key_create)(organization=organization, created_by=user)
    return created.raw_key


async def welcomed(key: str) -> tuple:
    comm = await connected(key=key)
    welcome = await receive(comm)
    assert welcome["type"] == "welcome"
    return comm, welcome


async def open_connections(key: str, count: int) -> list:
    """One after the other, so their admission order is the list's order."""
    return [(await welcomed(key))[0] for _ in range(count)]


async def is_open(comm, ping_id: int | str) -> bool:
    await comm.send_json_to({"op": "ping", "id": ping_id})
    return (await receive_until(comm, lambda f: f["type"] == "pong"))["id"] == ping_id


async def slots_in_use(organization_id: int, expected: int, seconds: float = 3.0) -> int:
    """Slots held once the releases of just-disconnected clients have gone through."""
    slots, deadline = hub_peek().slots, time.monotonic() + seconds
    while (in_use := await slots.in_use(organization_id=organization_id)) != expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return in_use


def trade(i: int) -> dict:
    return {"id": str(i), "ts": int(time.time() * 1000), "price": 100.0, "size": 1.0, "side": "buy"}


async def test_a_downgrade_closes_the_newest_connections_beyond_the_limit_with_4008(
    sim_market, alice, acme, mallory, globex
):
    await sync_to_async(plan_grant)(acme, code="three", ws_connections=3)
    await sync_to_async(plan_grant)(globex, code="three", ws_connections=3)
    key, globex_key = await new_key(acme, alice), await new_key(globex, mallory)
    oldest, middle, newest = await open_connections(key, 3)
    bystanders = await open_connections(globex_key, 3)
    await oldest.send_json_to({"op": "subscribe", "channels": [BTC]})
    assert (await receive(oldest))["type"] == "subscribed"

    started = time.monotonic()
    await sync_to_async(plan_grant)(acme, code="one", ws_connections=1)
    for comm in (middle, newest):
        # The error frame says why (daphne passes no close reason on), then 4008.
        error = await receive_until(comm, lambda f: f["type"] == "error", seconds=3)
        assert error == {
            "type": "error",
            "code": "quota_exceeded",
            "message": "Plan changed: your plan allows 1 concurrent connections.",
            "details": {"limit": 1},
        }
        assert (await close_message(comm, seconds=1))["code"] == 4008
    assert time.monotonic() - started < 3

    await asyncio.sleep(RECHECK_SECONDS * 4)  # later rounds close nothing more
    await Publisher(window_seconds=0).publish("trades", "sim", "BTC/USD", [trade(1)])
    update = await receive_until(oldest, lambda f: f["type"] == "update")
    assert update["channel"] == BTC and update["data"][0]["id"] == "1"
    assert await is_open(oldest, "oldest")
    # Another organization's connections are not touched by Acme's plan.
    for i, comm in enumerate(bystanders):
        assert await is_open(comm, i)
    for comm in (oldest, middle, newest, *bystanders):
        await comm.disconnect()


async def test_slots_freed_by_a_downgrade_are_free_again_after_an_upgrade(sim_market, alice, acme):
    await sync_to_async(plan_grant)(acme, code="three", ws_connections=3)
    key = await new_key(acme, alice)
    oldest, middle, newest = await open_connections(key, 3)
    await sync_to_async(plan_grant)(acme, code="one", ws_connections=1)
    assert await closed_with(middle, seconds=3) == 4008
    assert await closed_with(newest, seconds=3) == 4008
    await middle.disconnect()
    await newest.disconnect()
    assert await slots_in_use(acme.pk, expected=1) == 1

    await sync_to_async(plan_grant)(acme, code="three", ws_connections=3)
    again = await open_connections(key, 2)
    refused = await connected(key=key)
    error = await receive(refused)
    assert error["code"] == "quota_exceeded" and error["details"] == {"limit": 3}
    assert await closed_with(refused) == 4008
    assert await is_open(oldest, "still")
    for comm in (oldest, *again):
        await comm.disconnect()


async def test_each_process_closes_only_its_own_connections_beyond_the_limit(
    sim_market, alice, acme, other_process
):
    """The set holds [theirs, ours, ours, theirs] in admission order; the limit drops
    to 2, so the second of ours and their newest are beyond: we close ours only."""
    await sync_to_async(plan_grant)(acme, code="four", ws_connections=4)
    key = await new_key(acme, alice)
    theirs_old = await other_process.acquire(
        organization_id=acme.pk, connection_id="elsewhere-old", limit=4
    )
    ours_old, ours_new = await open_connections(key, 2)
    theirs_new = await other_process.acquire(
        organization_id=acme.pk, connection_id="elsewhere-new", limit=4
    )
    assert theirs_old.acquired and theirs_new.acquired

    await sync_to_async(plan_grant)(acme, code="two", ws_connections=2)
    assert await closed_with(ours_new, seconds=3) == 4008
    await ours_new.disconnect()
    await asyncio.sleep(RECHECK_SECONDS * 4)
    assert await is_open(ours_old, "ours")
    # The check ran and found our remaining connection within the new limit...
    assert [c.plan_connections for c in hub_peek().connections] == [2]
    # ...and left the other process's newest slot, beyond it, for that process to close.
    assert await other_process.beyond(organization_id=acme.pk, limit=2) == [theirs_new.member]
    await other_process.release(
        organization_id=acme.pk, connection_ids=[theirs_old.member, theirs_new.member]
    )
    await ours_old.disconnect()


async def test_a_downgrade_to_fewer_subscriptions_drops_the_newest_and_the_connection_stays(
    sim_market, alice, acme
):
    await sync_to_async(plan_subscribe)(acme, code="subs-three", ws_subscriptions=3)
    key = await new_key(acme, alice)
    comm, welcome = await welcomed(key)
    assert welcome["limits"]["subscriptions"] == 3
    await comm.send_json_to({"op": "subscribe", "channels": [BTC, ETH]})
    assert (await receive(comm))["type"] == "subscribed"
    await comm.send_json_to({"op": "subscribe", "channels": [BOOK]})
    assert (await receive(comm))["type"] == "subscribed"

    # The same Stripe subscription moves to a cheaper price, as the webhook sync stores it.
    await sync_to_async(plan_subscribe)(acme, code="subs-one", ws_subscriptions=1)
    error = await receive_until(comm, lambda f: f["type"] == "error", seconds=3)
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"limit": 1, "subscribed": 1, "channels": [ETH, BOOK]}

    publisher = Publisher(window_seconds=0)
    await publisher.publish("trades", "sim", "ETH/USD", [trade(1)])
    await publisher.publish("trades", "sim", "BTC/USD", [trade(2)])
    update = await receive_until(comm, lambda f: f["type"] in ("update", "snapshot"))
    assert update["channel"] == BTC
    wanted = {
        c
        for by_channel in hub_peek().subscribers.values()
        for c, conns in by_channel.items()
        if conns
    }
    assert wanted == {BTC}
    # The open connection now answers to the new limit, and is still open.
    await comm.send_json_to({"op": "subscribe", "channels": [ETH]})
    refused = await receive_until(comm, lambda f: f["type"] == "error")
    assert refused["code"] == "quota_exceeded"
    assert refused["details"] == {"limit": 1, "subscribed": 1}
    await comm.send_json_to({"op": "unsubscribe", "channels": [ETH, BOOK]})
    assert await receive_until(comm, lambda f: f["type"] == "unsubscribed") == {
        "type": "unsubscribed",
        "channels": [],
    }
    assert await is_open(comm, "after")
    await comm.disconnect()


async def test_after_a_downgrade_without_analytics_subscribing_to_them_is_refused_with_4003(
    sim_market, alice, acme
):
    await sync_to_async(plan_grant)(acme, code="with-analytics", analytics=True)
    comm, _ = await welcomed(await new_key(acme, alice))
    await comm.send_json_to({"op": "subscribe", "channels": [BTC]})
    assert (await receive(comm))["type"] == "subscribed"
    await sync_to_async(plan_grant)(acme, code="without-analytics", analytics=False)
    await asyncio.sleep(RECHECK_SECONDS * 4)
    assert await is_open(comm, "no analytics held, still open")
    await comm.send_json_to({"op": "subscribe", "channels": ["ofi.sim.BTC-USD"]})
    error = await receive(comm)
    assert error["code"] == "plan_required"
    assert error["details"] == {"channels": ["ofi.sim.BTC-USD"]}
    assert await closed_with(comm) == 4003


async def test_without_redis_the_newest_slots_are_the_ones_beyond_the_limit():
    """The embedded single-process mode answers the same question the same way."""
    slots = LocalSlots()
    members = [
        (await slots.acquire(organization_id=1, connection_id=name, limit=3)).member
        for name in ("c", "b", "a")  # ids in reverse order: admission order decides
    ]
    assert await slots.beyond(organization_id=1, limit=1) == members[1:]
    assert await slots.beyond(organization_id=1, limit=3) == []
