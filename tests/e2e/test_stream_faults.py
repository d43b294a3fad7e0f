"""The stream under faults, end to end: a web process stopped with SIGTERM, a client flooding
control frames, Redis restarted under live clients, and a connection refused while Redis
is down (issues 11 and 18).

Real daphne, the real sim feed runner, real Redis (a server of the test's own where the
test stops it) and the ``websockets`` client. Every process a test starts, it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import pytest
import redis.asyncio as aioredis
import websockets
from django.conf import settings

from accounts.services.api_keys import api_key_create
from marketdata.streaming.quotas import slots_key
from tests.e2e.stream_servers import (
    FeedProcess,
    Recorder,
    RedisServer,
    WebProcess,
    close_code,
    connect,
    next_frame,
    opened,
    running,
    seq_gaps,
    tiny_socket,
)
from tests.factories import OrganizationFactory, UserFactory
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

TRADES, BOOK = "trades.sim.BTC-USD", "book.sim.BTC-USD"


@pytest.fixture
def keys(sim_market, alice, acme) -> dict:
    """fleet: 30 real-time connections; solo: one connection at a time."""
    plan_grant(acme, code="fleet", ws_connections=30)
    solo = OrganizationFactory(name="Solo Quant", owner=(owner := UserFactory()))
    plan_grant(solo, code="solo", ws_connections=1)
    return {
        "fleet": api_key_create(organization=acme, created_by=alice, name="fleet").raw_key,
        "solo": api_key_create(organization=solo, created_by=owner).raw_key,
        "fleet_org": acme.pk,
        "solo_org": solo.pk,
    }


def unexplained_gaps(frames: list[dict], channel: str) -> list[tuple[int, int]]:
    """Seq gaps on `channel` that the server did not announce.

    A client accepts a jump only after a ``lagged`` frame (then the next update starts
    after its ``to_seq``, or a snapshot comes) or a ``resume_unavailable`` error followed
    by a snapshot; a snapshot always sets the base.
    """
    gaps, last = [], None
    for frame in frames:
        kind = frame["type"]
        if kind == "lagged" and frame["channel"] == channel:
            last = frame["to_seq"]
        elif kind == "error" and frame.get("details", {}).get("channel") == channel:
            last = None  # the snapshot that follows is the new base
        elif frame.get("channel") == channel and kind == "snapshot":
            last = frame["seq"]
        elif frame.get("channel") == channel and kind == "update":
            first = frame.get("from_seq", frame["seq"])
            if last is not None and first != last + 1:
                gaps.append((last + 1, first))
            last = frame["seq"]
    return gaps


async def drained(keys: dict, tmp_path) -> dict:
    """20 subscribed clients and a solo-plan client on web process A, a second process B on
    the same Redis, and A stopped with SIGTERM (a deploy). What the clients saw."""
    client = aioredis.from_url(settings.REDIS_URL)
    a, b = WebProcess(logs=tmp_path), WebProcess(logs=tmp_path)
    with running(a, b, FeedProcess(logs=tmp_path)):
        fleet = [
            Recorder(ws)
            for ws in await asyncio.gather(
                *(opened(a.url, keys["fleet"], [TRADES, BOOK]) for _ in range(20))
            )
        ]
        solo = Recorder(await opened(a.url, keys["solo"], [TRADES]))
        await asyncio.gather(
            *(r.until(lambda r: len(r.of(TRADES)) >= 1, 30, "trades") for r in [*fleet, solo])
        )
        assert await client.zcard(slots_key(keys["fleet_org"])) == 20

        a.signal(signal.SIGTERM)
        await asyncio.wait_for(solo.task, 15)
        # The customer reconnects at once, to the process still running.
        again = await connect(b.url, key=keys["solo"])
        first = await next_frame(again)
        await asyncio.wait_for(asyncio.gather(*(r.task for r in fleet)), 15)
        exit_status = a.wait(15)
        slots_left = await client.zcard(slots_key(keys["fleet_org"]))
        resumed = None
        if first["type"] == "welcome":  # and picks up where it was, on the other process
            last = solo.of(TRADES)[-1]["seq"]
            await again.send(json.dumps({"op": "resume", "channels": {TRADES: last}}))
            resumed = Recorder(again)
            await resumed.until(lambda r: len(r.of(TRADES)) >= 3, 30, "trades after resume")
            await again.close()
            await resumed.stop()
        else:
            await again.close()
    await client.aclose()
    return {
        "codes": [r.code for r in fleet],
        "solo_code": solo.code,
        "first": first,
        "last": solo.of(TRADES)[-1]["seq"],
        "resumed": resumed.of(TRADES) if resumed else None,
        "exit_status": exit_status,
        "slots_left": slots_left,
    }


async def test_sigterm_gives_every_slot_back_so_a_solo_key_is_welcomed_elsewhere_at_once(
    keys, tmp_path
):
    seen = await drained(keys, tmp_path)
    # Not refused with 4008 while a dead slot expires: welcomed, and resumed without a gap.
    assert seen["first"]["type"] == "welcome", seen["first"]
    assert seq_gaps(seen["resumed"], after=seen["last"]) == []
    assert seen["exit_status"] == 0
    assert seen["slots_left"] == 0  # given back before the process exited


async def test_sigterm_closes_every_socket_with_1012(keys, tmp_path):
    seen = await drained(keys, tmp_path)
    assert seen["codes"] == [1012] * 20
    assert seen["solo_code"] == 1012


async def test_a_client_flooding_pings_without_reading_is_closed_4029_and_others_go_on(
    keys, tmp_path
):
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        other = Recorder(await opened(web.url, keys["fleet"], [TRADES]))
        await other.until(lambda r: len(r.of(TRADES)) >= 2, 30, "trades")

        flooder = await opened(
            web.url, keys["fleet"], [TRADES, BOOK], sock=tiny_socket(web.port), max_queue=1
        )
        flood_began = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            for i in range(5000):  # never reading a reply
                await flooder.send(json.dumps({"op": "ping", "id": i}))
        code = await close_code(flooder, 20)
        during = len(other.of(TRADES))
        await other.until(lambda r: len(r.of(TRADES)) >= during + 3, 30, "trades after the flood")
        await other.ws.close()
        await other.stop()

    assert code == 4029
    frames = other.of(TRADES)
    assert seq_gaps(frames) == []
    assert not [f for f in other.frames if f["type"] in ("lagged", "error")]
    # The other client's trades kept arriving promptly during the flood (generous bound:
    # the machine is small and shared).
    flood = [f for f in frames if f["_at"] >= flood_began]
    assert flood
    assert max(f["_wall_ms"] - max(r["recv_ts"] for r in f["data"]) for f in flood) < 3000


async def test_redis_restarted_under_three_clients_they_all_receive_again(keys, tmp_path):
    redis_server = RedisServer(logs=tmp_path)
    with running(redis_server):
        env = {"REDIS_URL": redis_server.url()}
        web = WebProcess(logs=tmp_path, **env)
        with running(web, FeedProcess(logs=tmp_path, **env)):
            clients = [
                Recorder(ws)
                for ws in await asyncio.gather(
                    *(opened(web.url, keys["fleet"], [TRADES, BOOK]) for _ in range(3))
                )
            ]
            for r in clients:
                await r.until(lambda r: len(r.of(TRADES)) >= 2 and len(r.of(BOOK)) >= 2, 30, "data")

            redis_server.stop()
            await asyncio.sleep(3)
            redis_server.start()
            back = time.monotonic()

            def fresh(r: Recorder, channel: str) -> list[dict]:
                return [f for f in r.of(channel) if f["_at"] >= back]

            for r in clients:
                await r.until(
                    lambda r: fresh(r, TRADES) and fresh(r, BOOK), 30, "data after the restart"
                )
            late = Recorder(await opened(web.url, keys["fleet"], [TRADES, BOOK]))
            await late.until(lambda r: len(r.of(TRADES)) >= 1 and r.of(BOOK), 20, "late data")
            for r in [*clients, late]:
                await r.ws.close()
                await r.stop()

    for r in clients:
        assert not [f for f in r.frames if f["type"] == "error" and "channel" not in f["details"]]
        for channel in (TRADES, BOOK):
            assert unexplained_gaps(r.frames, channel) == [], channel
            assert fresh(r, channel)[0]["_at"] - back <= 5.0, channel
    assert late.of(BOOK)[0]["type"] == "snapshot"


async def test_after_a_redis_restart_a_one_connection_plan_still_holds_one_connection(
    keys, tmp_path
):
    """The restart empties the slot sets: the open connection takes its slot again or is
    closed; it never stays open beside a second one outside the plan."""
    redis_server = RedisServer(logs=tmp_path)
    with running(redis_server):
        web = WebProcess(logs=tmp_path, REDIS_URL=redis_server.url())
        with running(web):
            first = Recorder(await opened(web.url, keys["solo"]))
            redis_server.stop()
            await asyncio.sleep(3)
            redis_server.start()
            deadline = time.monotonic() + 20
            while True:  # the same customer connects again as soon as Redis is back
                ws = await connect(web.url, key=keys["solo"])
                reply = await next_frame(ws)
                if reply["type"] == "welcome" or reply["code"] != "unavailable":
                    break
                await close_code(ws, 5)
                assert time.monotonic() < deadline, "refused as unavailable for 20 s"
                await asyncio.sleep(0.5)
            second = Recorder(ws)
            if reply["type"] == "welcome":
                # Two are open for a moment; the slot refresh (every 10 s) settles it.
                await first.until(
                    lambda _: first.task.done() or second.task.done(), 30, "one of them closed"
                )
            await asyncio.sleep(1)
            open_now = [r for r in (first, second) if not r.task.done()]
            codes = [r.code for r in (first, second) if r.task.done()]
            for r in (first, second):
                await r.ws.close()
                await r.stop()

    assert len(open_now) == 1
    assert codes == [4008], (reply, codes)


async def test_a_connection_refused_while_redis_is_down_is_closed_1013_at_once(keys, tmp_path):
    redis_server = RedisServer(logs=tmp_path)
    with running(redis_server):
        web = WebProcess(logs=tmp_path, REDIS_URL=redis_server.url())
        with running(web):
            await (await opened(web.url, keys["fleet"])).close()  # it works while Redis is up
            redis_server.stop()
            began = time.monotonic()
            ws = await connect(web.url, key=keys["fleet"])
            error = await next_frame(ws, 20)
            code = await close_code(ws, 12)
            took = time.monotonic() - began

            redis_server.start()
            deadline = time.monotonic() + 20
            while True:  # and once Redis is back, it is welcomed again
                retry = await connect(web.url, key=keys["fleet"])
                welcome = await next_frame(retry)
                await retry.close()
                if welcome["type"] == "welcome" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)

    assert error["type"] == "error" and error["code"] == "unavailable", error
    assert code == 1013
    assert took < 10, took  # promptly: not left open and silent
    assert welcome["type"] == "welcome", welcome


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_restarted_feed_continues_the_seq_and_status_says_down_then_up(
    keys, tmp_path, stop
):
    """A deploy (SIGTERM, the feed says goodbye) or a crash (SIGKILL, its health expires)."""
    status = "status.sim"

    def reports(r: Recorder) -> list[dict]:
        return r.of(status)

    with running(WebProcess(logs=tmp_path)) as (web,):
        first_feed = FeedProcess(logs=tmp_path, name="feed-1")
        second_feed = FeedProcess(logs=tmp_path, name="feed-2")
        with running(first_feed):
            client = Recorder(await opened(web.url, keys["fleet"], [status, TRADES]))
            await client.until(
                lambda r: (
                    len(r.of(TRADES)) >= 3 and any(f["data"]["connected"] for f in reports(r))
                ),
                40,
                "trades and a connected feed",
            )
            if stop == "sigterm":
                first_feed.stop()
                assert first_feed.wait(1) == 0
            else:
                first_feed.signal(signal.SIGKILL)
                assert first_feed.wait(5) == -signal.SIGKILL
            stopped = time.monotonic()
            await client.until(
                lambda r: not reports(r)[-1]["data"]["connected"], 15, "the feed said down"
            )
            assert time.monotonic() - stopped < 6  # a crash is told within seconds too
            stopped_at = (len(client.of(TRADES)), reports(client)[-1]["data"]["started_at"])
        with running(second_feed):
            await client.until(
                lambda r: (
                    reports(r)[-1]["data"]["connected"]
                    and reports(r)[-1]["data"]["started_at"] != stopped_at[1]
                ),
                40,
                "the restarted feed said up",
            )
            await client.until(
                lambda r: len(r.of(TRADES)) >= stopped_at[0] + 3, 30, "trades after the restart"
            )
        await client.ws.close()
        await client.stop()

    # The numbering went on from the stored stream: no reset to 1, no gap, no repeat.
    assert seq_gaps(client.of(TRADES)) == []
    # A dead feed's last report is repeated by the server, same seq, marked stale.
    assert seq_gaps([f for f in reports(client) if not f["data"].get("stale")]) == []
    if stop == "sigkill":
        assert any(f["data"].get("stale") for f in reports(client))


async def test_control_frames_count_against_the_queue_a_non_reader_within_the_rate_is_closed(
    keys, tmp_path
):
    """Pings paced under the message-rate limit, never read, while trades fill the socket:
    the pongs pile up in the connection's queue until its bound closes it (4029), not the
    rate limit (never reached) nor the lag timer (set far out)."""
    from marketdata.feeds.publish import Publisher

    def many_trades(i: int) -> list[dict]:  # ~10 kB: fills socket buffers in a second or two
        return [
            {"id": f"{i}-{k}", "ts": i, "price": 60000.0 + k, "size": 0.1, "side": "buy"}
            for k in range(100)
        ]

    limits = {
        "STREAM_QUEUE_FRAMES": "16",
        "STREAM_TRANSPORT_BACKLOG_BYTES": "32768",
        "STREAM_LAG_CLOSE_SECONDS": "120",
    }
    client = aioredis.from_url(settings.REDIS_URL)
    with running(WebProcess(logs=tmp_path, **limits)) as (web,):
        reader = Recorder(await opened(web.url, keys["fleet"], [TRADES]))
        flooder = await opened(
            web.url, keys["solo"], [TRADES], sock=tiny_socket(web.port), max_queue=1
        )
        stop = asyncio.Event()

        async def publish() -> None:
            publisher = Publisher(window_seconds=0)
            i = 0
            while not stop.is_set():
                i += 1
                await publisher.publish("trades", "sim", "BTC/USD", many_trades(i))
                await asyncio.sleep(0.005)
            await publisher.flush()
            await publisher.store.aclose()

        publishing = asyncio.create_task(publish())
        await asyncio.sleep(1)
        pings, closed_at = 0, None
        began = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            while time.monotonic() - began < 25:
                # 40 at once, then 8 a second: under 10 a second with a burst of 50.
                for _ in range(40 if pings == 0 else 1):
                    await flooder.send(json.dumps({"op": "ping", "id": pings}))
                    pings += 1
                await asyncio.sleep(0.125)
                if not await client.zcard(slots_key(keys["solo_org"])):
                    closed_at = time.monotonic()  # the server let the connection go
                    break
        stop.set()
        await publishing
        code = await close_code(flooder, 10)
        await reader.ws.close()
        await reader.stop()
    await client.aclose()

    assert closed_at is not None, f"still open after {pings} pings"
    # A client that reads nothing may not get to read the close frame: the server drops
    # the TCP connection after its close timeout, with the frame still unsent behind data.
    assert code in (4029, 1006), code
    frames = reader.of(TRADES)
    assert seq_gaps(frames) == []
    assert not [f for f in reader.frames if f["type"] in ("lagged", "error")]
