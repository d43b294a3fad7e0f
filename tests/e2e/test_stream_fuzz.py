"""Hostile and careless WebSocket clients against a real daphne: nobody else notices.

Random text and binary frames, invalid ops and channel names, messages over the
16 KiB protocol limit (answered `invalid`, the socket stays) and over daphne's
1 MiB hard limit (closed 1009), sent as fast as the server lets the fuzzers
send, while a well-behaved client keeps receiving every trade and the web
process's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
from pathlib import Path

import pytest
import websockets

from accounts.services.api_keys import api_key_create
from tests.e2e.stream_servers import (
    FeedProcess,
    Recorder,
    WebProcess,
    close_code,
    expect,
    opened,
    running,
    seq_gaps,
)
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

TRADES = "trades.sim.BTC-USD"
SEED = 20261205
FUZZ_SECONDS = 8
MAX_RSS_GROWTH_KB = 60 * 1024


@pytest.fixture
def key(sim_market, alice, acme) -> str:
    plan_grant(acme, code="fuzz", ws_connections=50)
    return api_key_create(organization=acme, created_by=alice, name="fuzz").raw_key


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def junk(rng: random.Random) -> str | bytes:
    """One message a careless or hostile client might send."""
    choice = rng.randrange(9)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 2048))  # binary
    if choice == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 300)))
    if choice == 2:
        return json.dumps({"op": rng.choice(["", "SUBSCRIBE", "drop", None, 7])})
    if choice == 3:
        name = "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 120)))
        return json.dumps({"op": "subscribe", "channels": [name]})
    if choice == 4:
        return json.dumps({"op": "subscribe", "channels": "trades.sim.BTC-USD"})
    if choice == 5:
        return json.dumps({"op": "resume", "channels": {TRADES: rng.choice([-1, 2**80, "x"])}})
    if choice == 6:
        return json.dumps({"op": "replay", "channel": TRADES, "from": 5, "to": 1, "speed": -1})
    if choice == 7:
        return "[" * rng.randrange(1, 5000)  # deep nesting
    return json.dumps({"op": "ping", "id": "x" * rng.randrange(0, 200)})


async def fuzz(url: str, key: str, rng: random.Random, seconds: float) -> dict[str, int]:
    """Send junk for `seconds`, reconnecting whenever the server closes (it may)."""
    seen = {"sent": 0, "closes": 0}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            ws = await opened(url, key)
            while loop.time() < end:
                await ws.send(junk(rng))
                seen["sent"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.02)  # take a reply if one is there
        except websockets.ConnectionClosed:
            seen["closes"] += 1
        except OSError:
            await asyncio.sleep(0.1)
    return seen


async def test_fuzzing_clients_leave_others_served_and_memory_bounded(key, tmp_path):
    rng = random.Random(SEED)
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        good = Recorder(await opened(web.url, key, [TRADES]))
        await good.until(lambda r: len(r.of(TRADES)) >= 2, 30, "trades")
        before = rss_kb(web.pid)

        results = await asyncio.gather(
            *(fuzz(web.url, key, random.Random(rng.random()), FUZZ_SECONDS) for _ in range(4))
        )
        during = len(good.of(TRADES))
        await good.until(lambda r: len(r.of(TRADES)) >= during + 2, 30, "trades after fuzzing")
        after = rss_kb(web.pid)
        assert web.alive()
        await good.ws.close()
        await good.stop()

    assert sum(r["sent"] for r in results) > 100
    assert seq_gaps(good.of(TRADES)) == []
    assert not [f for f in good.frames if f["type"] in ("lagged", "error")]
    assert after - before < MAX_RSS_GROWTH_KB, (before, after)


async def test_oversized_messages_get_invalid_up_to_the_hard_limit_then_1009(key, tmp_path):
    with running(WebProcess(logs=tmp_path)) as (web,):
        ws = await opened(web.url, key)
        await ws.send(json.dumps({"op": "ping", "id": 1, "pad": "x" * 100_000}))
        error = await expect(ws, "error")
        assert error["code"] == "invalid" and error["details"]["max_bytes"] == 16 * 1024
        await ws.send(json.dumps({"op": "ping", "id": 2}))
        assert (await expect(ws, "pong"))["id"] == 2  # the socket stayed

        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send("x" * (2 * 1024 * 1024))
        assert await close_code(ws, 10) == 1009
