"""Resume, conflation, feed status and bounded control frames, through the real hub and Redis."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from asgiref.sync import sync_to_async
from quantsaas_client.stream.book import OrderBook

from marketdata.feeds.publish import Publisher
from marketdata.feeds.status import StatusReporter
from marketdata.streaming import hub as hub_module
from marketdata.streaming import store as store_module
from marketdata.streaming.hub import hub_peek
from marketdata.streaming.store import replay_key, store_for_settings
from tests.streaming.conftest import (
    book,
    closed_with,
    connected,
    receive,
    receive_until,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)

TRADES = "trades.sim.BTC-USD"
BOOK = "book.sim.BTC-USD"


def trade(i: int) -> dict:
    return {"id": str(i), "ts": int(time.time() * 1000), "price": 100.0, "size": 1.0, "side": "buy"}


async def publish_each(publisher: Publisher, ids: range) -> None:
    for i in ids:
        await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await publisher.flush()  # one message per trade: one seq each


def covered(frame: dict) -> list[int]:
    return list(range(frame.get("from_seq", frame["seq"]), frame["seq"] + 1))


async def updates_until(comm, last_seq: int) -> list[dict]:
    got = []
    while not got or got[-1]["seq"] < last_seq:
        frame = await receive_until(comm, lambda f: f["type"] == "update")
        got.append(frame)
    return got


async def test_resume_sends_exactly_the_missed_messages_then_goes_on_live(acme_key):
    publisher = Publisher()
    first = await subscribed(acme_key, [TRADES])
    await publish_each(publisher, range(1, 6))
    seen = [s for f in await updates_until(first, 5) for s in covered(f)]
    assert seen == [1, 2, 3, 4, 5]
    await first.disconnect()  # the socket drops; the market goes on
    await publish_each(publisher, range(6, 13))

    again = await connected(key=acme_key)
    assert (await receive(again))["type"] == "welcome"
    await again.send_json_to({"op": "resume", "channels": {TRADES: 5}})
    assert (await receive(again))["type"] == "subscribed"
    await publish_each(publisher, range(13, 15))
    frames = await updates_until(again, 14)
    seqs = [s for f in frames for s in covered(f)]
    assert seqs == list(range(6, 15))  # no gap, no repeat
    ids = [t["id"] for f in frames for t in f["data"]]
    assert ids == [str(i) for i in range(6, 15)]
    await again.disconnect()


async def test_a_long_resume_is_read_page_by_page_and_live_messages_follow_it(
    acme_key, monkeypatch
):
    monkeypatch.setattr(store_module, "RESUME_PAGE", 40)
    monkeypatch.setattr(hub_module, "RESUME_FRAME_MESSAGES", 7)
    publisher = Publisher()
    await publish_each(publisher, range(1, 301))
    comm = await connected(key=acme_key)
    assert (await receive(comm))["type"] == "welcome"
    await comm.send_json_to({"op": "resume", "channels": {TRADES: 10}})
    assert (await receive(comm))["type"] == "subscribed"
    await publish_each(publisher, range(301, 306))  # live, while the backlog is sent
    frames = await updates_until(comm, 305)
    seqs = [s for f in frames for s in covered(f)]
    assert seqs == list(range(11, 306))  # every page, in order, then the live ones
    assert max(len(f["data"]) for f in frames[:-1]) <= 7
    await comm.disconnect()


async def test_resume_beyond_what_is_held_says_so_and_gives_a_fresh_snapshot(acme_key):
    publisher = Publisher()
    for i in range(1, 4):
        await publisher.publish("book", "sim", "BTC/USD", book(i))
        await publisher.flush()
    store = store_for_settings()
    await store.client.xtrim(replay_key(BOOK), maxlen=1, approximate=False)  # seq 3 only
    await store.aclose()
    comm = await connected(key=acme_key)
    assert (await receive(comm))["type"] == "welcome"
    await comm.send_json_to({"op": "resume", "channels": {BOOK: 1}})
    assert (await receive(comm))["type"] == "subscribed"
    error = await receive(comm)
    assert error.get("code") == "resume_unavailable", error
    assert error["details"] == {"channel": BOOK, "oldest_seq": 3}
    snapshot = await receive(comm)
    assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 3)
    assert snapshot["data"]["bids"] == [[103.0, 1.0]]
    await comm.disconnect()


async def test_conflation_sends_at_most_one_frame_a_window_with_the_latest_state(acme_key):
    publisher = Publisher()
    comm = await connected(key=acme_key)
    assert (await receive(comm))["type"] == "welcome"
    await comm.send_json_to({"op": "subscribe", "channels": [BOOK], "conflate_ms": 1000})
    assert (await receive(comm))["conflate_ms"] == 1000
    received: list[tuple[float, dict]] = []
    loop = asyncio.get_running_loop()

    async def read() -> None:
        while True:
            frame = await receive(comm, 5)
            received.append((loop.time(), frame))

    reader = asyncio.ensure_future(read())
    for i in range(1, 26):  # 25 book changes over 2.5 s
        await publisher.publish("book", "sim", "BTC/USD", book(i))
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.2)
    reader.cancel()
    times = [t for t, _ in received]
    assert 3 <= len(received) <= 5  # the snapshot, then one frame a second
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), received
    held = OrderBook(BOOK)  # the snapshot, then merged deltas: the latest state
    held.replace(received[0][1]["data"], received[0][1]["seq"])
    for _, frame in received[1:]:
        held.apply(frame["data"], frame["seq"])
    assert held.bids() == [(125.0, 1.0)] and held.asks() == [(126.0, 2.0)]
    await comm.disconnect()


async def test_feed_status_reaches_subscribers_when_it_changes(acme_key):
    from marketdata.feeds.health import StreamHealth

    publisher = Publisher()
    reporter = StatusReporter(publisher)
    health = StreamHealth(exchange="sim", kind="trades", symbol="BTC/USD")
    health.message()
    await reporter.report([health])
    comm = await subscribed(acme_key, ["status.sim"])
    snapshot = await receive(comm)
    assert snapshot["type"] == "snapshot" and snapshot["data"]["connected"] is True
    health.connected = False
    await reporter.report([health])
    update = await receive(comm)
    assert update["type"] == "update" and update["data"]["connected"] is False
    await comm.disconnect()


async def test_a_client_that_floods_requests_and_reads_nothing_is_closed(acme_key, monkeypatch):
    from marketdata.streaming import connection

    monkeypatch.setattr(connection, "CONTROL_SLACK", 4)
    comm = await connected(key=acme_key)
    assert (await receive(comm))["type"] == "welcome"
    hub_conn = next(iter(hub_peek().connections))
    hub_conn.max_frames = 4
    hub_conn._writer = None
    hub_conn._sender.cancel()  # a client whose socket takes nothing more
    for i in range(20):
        await comm.send_json_to({"op": "ping", "id": i})
    assert await closed_with(comm) == 4029


async def test_alerts_reach_only_their_own_organization(acme_key, acme, globex, alice):
    from accounts.services.api_keys import api_key_create
    from tests.streaming.conftest import plan_grant

    await sync_to_async(plan_grant)(globex, code="other")
    other_key = (
        await sync_to_async(api_key_create)(organization=globex, created_by=alice, name="g")
    ).raw_key
    mine = await subscribed(acme_key, ["alerts"])
    theirs = await subscribed(other_key, ["alerts"])
    publisher = Publisher()
    await publisher.publish_to(f"alerts.{acme.pk}", "alerts", [{"rule": 1, "price": 101.5}])
    frame = await receive(mine)
    assert (frame["type"], frame["channel"]) == ("update", "alerts")
    assert frame["data"] == [{"rule": 1, "price": 101.5, "recv_ts": frame["data"][0]["recv_ts"]}]
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()
