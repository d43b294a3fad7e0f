"""A deliberately slow reader gets `lagged` and a fresh snapshot; a fast one is unaffected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.services.api_keys import api_key_create
from marketdata.feeds.publish import Publisher
from tests.e2e.stream_servers import processes
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

BOOK = "book.sim.BTC-USD"
LEVELS = 200  # the feed keeps 50; a depth-50 delta changing every level is ~2.5 kB
# Bytes sent to both readers before the slow one reads: more than the socket buffers
# between the server and it hold (4 MB at most on Linux). Counted, not timed: a loaded
# machine sends fewer a second.
BACKED_UP_BYTES = 6_000_000


def book(i: int) -> dict:
    ts = int(time.time() * 1000)
    return {
        # Every level's size changes every time, so each delta carries the whole book.
        "bids": [[60000.0 - k, 1.0 + k + i / 1000] for k in range(LEVELS)],
        "asks": [[60001.0 + k, 1.0 + k + i / 1000] for k in range(LEVELS)],
        "ts": ts,
    }


async def publish_until(stop: asyncio.Event, seconds: float = 80) -> int:
    """Publish book changes until `stop`; returns the last seq (messages, not changes:
    changes arriving while an append is in flight share a message)."""
    publisher = Publisher(window_seconds=0)
    i = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        i += 1
        await publisher.publish("book", "sim", "BTC/USD", book(i))
        await asyncio.sleep(0.003)
    await publisher.flush()
    return publisher.seq[BOOK]


def tiny_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so not reading backs up quickly."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_slow_reader_gets_lagged_and_a_snapshot_while_a_fast_reader_gets_everything(
    sim_market, alice, acme
):
    await sync_to_async(plan_grant)(acme)
    key = (await sync_to_async(api_key_create)(organization=acme, created_by=alice)).raw_key
    limits = {
        "STREAM_QUEUE_FRAMES": "16",
        "STREAM_TRANSPORT_BACKLOG_BYTES": "32768",
        "STREAM_LAG_CLOSE_SECONDS": "60",
    }
    with processes(feeds=False, **limits) as (url, port):
        common = {
            "additional_headers": {"Authorization": f"Bearer {key}"},
            "origin": f"http://127.0.0.1:{port}",
            "close_timeout": 1,
        }
        async with (
            websockets.connect(url, **common) as fast,
            websockets.connect(url, sock=tiny_socket(port), max_queue=1, **common) as slow,
        ):
            for ws in (fast, slow):
                assert json.loads(await ws.recv())["type"] == "welcome"
                await ws.send(json.dumps({"op": "subscribe", "channels": [BOOK], "depth": 50}))
                assert json.loads(await ws.recv())["type"] == "subscribed"

            stop = asyncio.Event()
            publishing = asyncio.create_task(publish_until(stop))
            fast_frames: list[dict] = []
            fast_bytes = 0

            async def read_fast():
                nonlocal fast_bytes
                while True:
                    try:
                        raw = await asyncio.wait_for(fast.recv(), 2)
                        fast_bytes += len(raw)
                        fast_frames.append(json.loads(raw))
                    except TimeoutError:
                        if publishing.done():
                            return  # everything published has arrived
                        raise

            reader = asyncio.create_task(read_fast())
            while fast_bytes < BACKED_UP_BYTES:  # the slow client reads nothing meanwhile
                assert not reader.done() and not publishing.done(), "publishing stalled"
                await asyncio.sleep(0.1)
            stop.set()
            published = await publishing
            slow_frames: list[dict] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    frame = json.loads(await asyncio.wait_for(slow.recv(), 3))
                    slow_frames.append(frame)
            await asyncio.wait_for(reader, 10)

        # The fast reader saw every message, in order, with no gap and no lag notice.
        # A frame may carry several messages (from_seq..seq).
        seqs = [s for f in fast_frames for s in range(f.get("from_seq", f["seq"]), f["seq"] + 1)]
        assert [f["type"] for f in fast_frames[:1]] == ["snapshot"]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert not any(f["type"] == "lagged" for f in fast_frames)
        assert seqs[-1] == published  # up to the last message

        # The slow reader was told what it missed and then given a fresh book.
        lagged = [i for i, f in enumerate(slow_frames) if f["type"] == "lagged"]
        assert lagged, [f["type"] for f in slow_frames[-5:]]
        notice = slow_frames[lagged[0]]
        assert notice["channel"] == BOOK and notice["missed"] >= 1
        before = slow_frames[lagged[0] - 1]
        assert notice["from_seq"] == before["seq"] + 1
        after = slow_frames[lagged[0] + 1]
        assert after["type"] == "snapshot" and after["seq"] >= notice["to_seq"]
