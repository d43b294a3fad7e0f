"""The stream end to end: real daphne, real Redis, the real sim feed, a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import ApiKey
from accounts.services.api_keys import api_key_create, api_key_revoke
from tests.e2e.stream_servers import processes
from tests.streaming.conftest import plan_grant, session_cookie
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

TRADES, BOOK = "trades.sim.BTC-USD", "book.sim.BTC-USD"


def connect(url: str, port: int, *, key: str | None = None, cookie: str | None = None, **kw):
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if cookie:
        headers["Cookie"] = cookie
    # close_timeout: a client that stopped reading (as these tests do) would otherwise wait
    # the default 10 s for a close frame queued behind data it never reads.
    kw.setdefault("close_timeout", 1)
    return websockets.connect(
        url, additional_headers=headers, origin=f"http://127.0.0.1:{port}", **kw
    )


async def next_frame(ws, seconds: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), seconds))


async def welcomed(ws) -> dict:
    frame = await next_frame(ws)
    assert frame["type"] == "welcome", frame
    return frame


async def subscribe(ws, channels: list[str]) -> None:
    await ws.send(json.dumps({"op": "subscribe", "channels": channels}))
    assert (await next_frame(ws))["type"] == "subscribed"


@pytest.fixture
def keys(request, alice, acme, mallory, globex):
    request.getfixturevalue("sim_market")
    plan_grant(acme, code="live", ws_connections=5)
    plan_grant(globex, code="delayed", stream_delay_seconds=2, ws_connections=5)
    return {
        "live": api_key_create(organization=acme, created_by=alice, name="live").raw_key,
        "live2": api_key_create(organization=acme, created_by=alice, name="live2").raw_key,
        "delayed": api_key_create(organization=globex, created_by=mallory).raw_key,
        "cookie": session_cookie(alice, acme),
    }


async def test_auth_three_ways_seq_without_gaps_delay_and_revocation(keys):
    with processes() as (url, port):
        async with (
            connect(url, port, key=keys["live"]) as by_header,
            connect(url, port, cookie=keys["cookie"]) as by_cookie,
            connect(url, port) as by_message,
            connect(url, port, key=keys["delayed"]) as delayed,
        ):
            await by_message.send(json.dumps({"op": "auth", "key": keys["live2"]}))
            for ws in (by_header, by_cookie, by_message):
                assert (await welcomed(ws))["limits"]["delay_seconds"] == 0
                await subscribe(ws, [TRADES, BOOK])
            assert (await welcomed(delayed))["limits"]["delay_seconds"] == 2
            await subscribe(delayed, [TRADES])

            # The delayed plan's first message is at least its delay old.
            first = await next_frame(delayed, 20)
            assert first["type"] == "update"
            assert time.time() * 1000 - max(t["ts"] for t in first["data"]) >= 2000

            # Ten seconds of streaming: per channel, seq increases by exactly one, and
            # all three real-time connections see the same messages.
            seen: dict[int, dict[str, list[int]]] = {}
            deadline = time.monotonic() + 10
            for i, ws in enumerate((by_header, by_cookie, by_message)):
                seen[i] = {TRADES: [], BOOK: []}
                while time.monotonic() < deadline or not seen[i][TRADES]:
                    frame = await next_frame(ws)
                    if frame["type"] in ("update", "snapshot"):
                        seen[i][frame["channel"]].append(frame["seq"])
                deadline = time.monotonic()  # the others read what is already queued
            for channel in (TRADES, BOOK):
                seqs = seen[0][channel]
                assert len(seqs) >= 5, channel
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), channel

            # Revoking a key closes its open connection within seconds.
            key = await sync_to_async(ApiKey.objects.get)(name="live")
            await sync_to_async(api_key_revoke)(api_key=key, actor=None)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await next_frame(by_header, 10)
            assert closed.value.rcvd.code == 4001


async def test_connection_quota_holds_under_a_race_and_mass_disconnect_leaves_nothing(
    keys, acme, globex
):
    import redis.asyncio as aioredis
    from django.conf import settings

    from marketdata.streaming.quotas import slots_key

    with processes(feeds=False) as (url, port):

        async def attempt():
            ws = await connect(url, port, key=keys["live"])
            frame = await next_frame(ws)
            return ws, frame

        results = await asyncio.gather(*(attempt() for _ in range(20)))
        welcomed_ = [ws for ws, frame in results if frame["type"] == "welcome"]
        refused = [(ws, frame) for ws, frame in results if frame["type"] == "error"]
        assert len(welcomed_) == 5 and len(refused) == 15
        assert all(f["code"] == "quota_exceeded" and f["details"]["limit"] == 5 for _, f in refused)
        for ws, _ in refused:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await next_frame(ws)
            assert closed.value.rcvd.code == 4008
        await asyncio.gather(*(ws.close() for ws in welcomed_))

        # 500 clients (an enterprise-sized override), all subscribed, all gone at once.
        await sync_to_async(plan_grant)(globex, code="big", ws_connections=600)
        big_key = keys["delayed"]

        async def subscriber():
            ws = await connect(url, port, key=big_key, open_timeout=60)
            await welcomed(ws)
            await subscribe(ws, [TRADES, BOOK])
            return ws

        clients = []
        for _ in range(10):
            clients += await asyncio.gather(*(subscriber() for _ in range(50)))
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            assert await client.zcard(slots_key(globex.pk)) == 500
            for ws in clients:  # drop every socket at the same instant
                ws.transport.abort()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if await client.zcard(slots_key(globex.pk)) == 0:
                    break
                await asyncio.sleep(0.2)
            assert await client.zcard(slots_key(globex.pk)) == 0
        finally:
            await client.aclose()
