"""The stream client's reconnect, resume, gap and book logic against a scripted local peer."""

from __future__ import annotations

import asyncio
import threading

import pytest
from quantsaas_client import (
    Backoff,
    ChecksumMismatch,
    Gap,
    Lagged,
    Reconnecting,
    ResumeUnavailable,
    Snapshot,
    Stream,
    StreamAuthenticationFailed,
    StreamClosed,
    SyncStream,
    Update,
    Welcome,
)
from quantsaas_client.stream.book import OrderBook, crc32_checksum

from tests.client.local_ws import BOOK, TRADES, WELCOME, collect, frame, hold, op, update, ws_server
from tests.e2e.stream_servers import free_port

FAST = Backoff(base=0.05, cap=0.2)


def updates(events: list, channel: str = TRADES) -> list[int]:
    return [e.seq for e in events if isinstance(e, Update) and e.channel == channel]


def seqs_reach(n: int, channel: str = TRADES):
    return lambda events: n in updates(events, channel)


async def test_a_dropped_connection_resumes_with_every_seq_once():
    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        if index == 0:
            assert (await op(ws, ops))["op"] == "subscribe"
            for seq in range(1, 6):
                await ws.send(update(TRADES, seq))
            await asyncio.sleep(0.1)
            ws.transport.abort()  # the TCP connection dies, no close frame
            return
        await op(ws, ops)
        for seq in range(4, 11):  # the resume overlaps what the client already has
            await ws.send(update(TRADES, seq))
        await hold(ws)

    async with ws_server(handler) as (url, connections):
        stream = Stream([TRADES], url=url, api_key="qs_x", backoff=FAST)
        events = await collect(stream, until=seqs_reach(10))
        await stream.close()
    assert updates(events) == list(range(1, 11))
    assert connections[1] == [{"op": "resume", "channels": {TRADES: 5}}]
    reconnect = next(e for e in events if isinstance(e, Reconnecting))
    assert reconnect.code is None and 0.025 <= reconnect.delay <= 0.05
    welcomes = [e for e in events if isinstance(e, Welcome)]
    assert [w.reconnect for w in welcomes] == [False, True]
    assert stream.stats.duplicates_dropped == 2 and stream.stats.gaps == 0


async def test_close_1012_reconnects_at_once_and_resumes():
    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        await op(ws, ops)
        first = 1 if index == 0 else 3
        for seq in range(first, first + 2):
            await ws.send(update(TRADES, seq))
        if index == 0:
            await ws.close(1012, "service restart")
            return
        await hold(ws)

    async with ws_server(handler) as (url, connections):
        stream = Stream([TRADES], url=url, backoff=Backoff(base=5, cap=5))
        events = await collect(stream, until=seqs_reach(4), seconds=4)
        await stream.close()
    assert updates(events) == [1, 2, 3, 4]
    reconnect = next(e for e in events if isinstance(e, Reconnecting))
    assert (reconnect.code, reconnect.delay) == (1012, 0.0)
    assert connections[1][0]["op"] == "resume"


async def test_a_server_without_resume_gets_a_subscribe_and_the_loss_is_reported():
    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        message = await op(ws, ops)
        if index == 1:
            assert message["op"] == "resume"
            details = {"op": "resume", "allowed": ["auth", "subscribe", "unsubscribe", "ping"]}
            await ws.send(
                frame(type="error", code="invalid", message="Unknown op.", details=details)
            )
            assert (await op(ws, ops)) == {"op": "subscribe", "channels": [TRADES]}
        for seq in (1, 2) if index == 0 else (9, 10):
            await ws.send(update(TRADES, seq))
        if index == 0:
            ws.transport.abort()
            return
        await hold(ws)

    async with ws_server(handler) as (url, _):
        stream = Stream([TRADES], url=url, backoff=FAST)
        events = await collect(stream, until=seqs_reach(10))
        await stream.close()
    gaps = [e for e in events if isinstance(e, Gap)]
    assert gaps == [Gap(TRADES, expected_seq=3, received_seq=9, reason="resume_not_supported")]
    assert updates(events) == [1, 2, 9, 10]
    assert stream.resume_supported is False


async def test_resume_unavailable_is_an_event_and_the_snapshot_restarts_the_book():
    book_data = {"bids": [[100.0, 1.0]], "asks": [[101.0, 2.0]], "ts": 5}

    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        message = await op(ws, ops)
        if index == 0:
            await ws.send(frame(type="snapshot", channel=BOOK, seq=1, data=book_data))
            await ws.send(update(TRADES, 1))
            ws.transport.abort()
            return
        assert message == {"op": "resume", "channels": {BOOK: 1, TRADES: 1}}
        for channel, oldest in ((TRADES, 500), (BOOK, 700)):
            details = {"channel": channel, "oldest_seq": oldest}
            await ws.send(
                frame(type="error", code="resume_unavailable", message="too old", details=details)
            )
        new_book = {"bids": [[99.0, 1.0]], "asks": [[99.5, 1.0]], "ts": 9}
        await ws.send(frame(type="snapshot", channel=BOOK, seq=900, data=new_book))
        await ws.send(update(TRADES, 800))
        await hold(ws)

    async with ws_server(handler) as (url, _):
        stream = Stream([BOOK, TRADES], url=url, backoff=FAST)
        events = await collect(stream, until=seqs_reach(800))
        await stream.close()
    unavailable = [e for e in events if isinstance(e, ResumeUnavailable)]
    assert [(e.channel, e.last_seq, e.oldest_seq) for e in unavailable] == [
        (TRADES, 1, 500),
        (BOOK, 1, 700),
    ]
    assert not [e for e in events if isinstance(e, Gap)]
    snapshots = [e for e in events if isinstance(e, Snapshot)]
    assert snapshots[-1].seq == 900 and snapshots[-1].book.best_bid == (99.0, 1.0)
    assert updates(events) == [1, 800]


async def test_lagged_and_unannounced_jumps_are_told_apart():
    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        await op(ws, ops)
        await ws.send(update(TRADES, 1))
        lagged = frame(type="lagged", channel=TRADES, missed=30, from_seq=2, to_seq=5)
        await ws.send(lagged)
        for seq in (6, 9):
            await ws.send(update(TRADES, seq))
        await hold(ws)

    async with ws_server(handler) as (url, _):
        stream = Stream([TRADES], url=url)
        events = await collect(stream, until=seqs_reach(9))
        await stream.close()
    assert [e for e in events if isinstance(e, Lagged)] == [Lagged(TRADES, 30, 2, 5)]
    assert [e for e in events if isinstance(e, Gap)] == [Gap(TRADES, 7, 9, "gap")]
    assert updates(events) == [1, 6, 9]


async def test_book_deltas_are_verified_and_a_mismatch_fetches_a_fresh_snapshot():
    snapshot = {"bids": [[100.0, 1.0], [99.0, 2.0]], "asks": [[101.0, 1.0]], "ts": 1}
    expected = OrderBook(BOOK)
    expected.replace(snapshot, 1)
    expected.apply({"bids": [[100.0, 0]], "asks": [[100.5, 3.0]]}, 2)
    good = {
        "bids": [[100.0, 0]],
        "asks": [[100.5, 3.0]],
        "ts": 2,
        "checksum": crc32_checksum(expected),
    }
    bad = {"bids": [[99.0, 5.0]], "asks": [], "ts": 3, "checksum": 12345}

    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        await op(ws, ops)
        await ws.send(frame(type="snapshot", channel=BOOK, seq=1, data=snapshot))
        await ws.send(update(BOOK, 2, good))
        await ws.send(update(BOOK, 3, bad))
        assert (await op(ws, ops)) == {"op": "unsubscribe", "channels": [BOOK]}
        assert (await op(ws, ops)) == {"op": "subscribe", "channels": [BOOK]}
        fresh = {"bids": [[98.0, 1.0]], "asks": [[98.5, 1.0]], "ts": 4}
        await ws.send(frame(type="snapshot", channel=BOOK, seq=4, data=fresh))
        await hold(ws)

    async with ws_server(handler) as (url, _):
        stream = Stream([BOOK], url=url)
        events = await collect(
            stream, until=lambda evs: any(isinstance(e, Snapshot) and e.seq == 4 for e in evs)
        )
        await stream.close()
    book_updates = [e for e in events if isinstance(e, Update)]
    assert book_updates[0].seq == 2 and book_updates[0].book is not None
    assert next(e for e in events if isinstance(e, ChecksumMismatch)).seq == 3
    assert book_updates[1].book is None  # not trusted until the fresh snapshot
    assert stream.books[BOOK].best_bid == (98.0, 1.0) and stream.books[BOOK].seq == 4


async def test_refused_connections_back_off_with_jitter_then_give_up():
    stream = Stream(
        [TRADES], url=f"ws://127.0.0.1:{free_port()}/ws/v1/stream", backoff=FAST, max_reconnects=3
    )
    events = []
    with pytest.raises(StreamClosed):
        async for event in stream:
            events.append(event)
    delays = [e.delay for e in events]
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        ceiling = min(0.2, 0.05 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


async def test_a_rejected_key_is_fatal_not_retried():
    async def handler(ws, index, ops):
        await ws.send(frame(type="error", code="authentication_failed", message="Bad key."))
        await ws.close(4001, "bad key")

    async with ws_server(handler) as (url, connections):
        with pytest.raises(StreamAuthenticationFailed) as raised:
            async for _ in Stream([TRADES], url=url, backoff=FAST):
                pass
    assert raised.value.code == 4001 and len(connections) == 1


def test_the_sync_wrapper_iterates_in_a_plain_script():
    async def handler(ws, index, ops):
        await ws.send(WELCOME)
        await op(ws, ops)
        for seq in range(1, 4):
            await ws.send(update(TRADES, seq))
        await hold(ws)

    ready, finished = threading.Event(), threading.Event()
    where: dict[str, str] = {}

    async def serve_until_finished():
        async with ws_server(handler) as (url, _):
            where["url"] = url
            ready.set()
            await asyncio.to_thread(finished.wait)

    server = threading.Thread(target=asyncio.run, args=(serve_until_finished(),))
    server.start()
    try:
        assert ready.wait(10)
        seen = []
        with SyncStream(Stream([TRADES], url=where["url"])) as stream:
            for event in stream:
                if isinstance(event, Update):
                    seen.append(event.seq)
                    if event.seq == 3:
                        break
        assert seen == [1, 2, 3]
    finally:
        finished.set()
        server.join(10)
