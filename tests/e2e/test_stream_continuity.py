"""The stream's continuity, end to end: resume, replay, conflation, unsubscribe, heartbeats,
and two web processes behind one Redis (issue 11).

Real daphne (``python -m quantsaas.web``), the real sim feed runner, real Redis and
PostgreSQL, the ``websockets`` client. Assertions are on what a client sees (seq, from_seq,
records, frame types), never on tight timings.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from accounts.services.api_keys import api_key_create
from marketdata.streaming.store import replay_key
from tests.e2e.stream_servers import (
    ClientBook,
    FeedProcess,
    Recorder,
    WebProcess,
    close_code,
    connect,
    expect,
    next_frame,
    opened,
    running,
    seq_gaps,
    singles,
    subscribe,
    trade_ids,
)
from tests.factories import OrganizationFactory, UserFactory
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

TRADES, BOOK, STATUS = "trades.sim.BTC-USD", "book.sim.BTC-USD", "status.sim"


@pytest.fixture
def keys(sim_market, alice, acme, mallory, globex) -> dict[str, str]:
    """live: real time, 20 connections; delayed: 2 s late; solo: one connection at a time."""
    plan_grant(acme, code="live", ws_connections=20)
    plan_grant(globex, code="delayed", stream_delay_seconds=2, ws_connections=5)
    solo = OrganizationFactory(name="Solo Quant", owner=(owner := UserFactory()))
    plan_grant(solo, code="solo", ws_connections=1)
    return {
        "live": api_key_create(organization=acme, created_by=alice, name="live").raw_key,
        "delayed": api_key_create(organization=globex, created_by=mallory).raw_key,
        "solo": api_key_create(organization=solo, created_by=owner).raw_key,
    }


def last_seq(recorder: Recorder, channel: str) -> int:
    frames = recorder.of(channel)
    return frames[-1]["seq"] if frames else 0


RESUME_BY = {
    "resume": lambda channel, seq: {"op": "resume", "channels": {channel: seq}},
    "since_seq": lambda channel, seq: {"op": "subscribe", "channels": [channel], "since_seq": seq},
}


async def dropped_and_resumed(url: str, key: str, *, by: str, away: Recorder) -> dict:
    """A client that reads some trades, loses its socket, waits while `away` (a client that
    stays) sees more, reconnects and resumes `by` one of RESUME_BY. What it saw."""
    dropped = Recorder(await opened(url, key, [TRADES]))
    await dropped.until(lambda r: len(r.of(TRADES)) >= 5, 30, "trades before the drop")
    dropped.ws.transport.abort()  # the network drops it: no close handshake
    await dropped.stop()
    before = dropped.of(TRADES)
    last = before[-1]["seq"]
    # The market goes on while the client is away.
    await away.until(lambda r: last_seq(r, TRADES) >= last + 5, 30, "trades meanwhile")
    missed_meanwhile = last_seq(away, TRADES)

    ws = await opened(url, key)
    await ws.send(json.dumps(RESUME_BY[by](TRADES, last)))
    await expect(ws, "subscribed")
    resumed = Recorder(ws)
    await resumed.until(
        lambda r: last_seq(r, TRADES) >= missed_meanwhile + 10, 40, "live trades after resume"
    )
    await resumed.ws.close()
    await resumed.stop()
    return {"before": before, "last": last, "resumed": resumed}


@pytest.mark.parametrize("by", list(RESUME_BY))
async def test_resume_after_a_dropped_socket_sends_exactly_the_missed_seqs(keys, tmp_path, by):
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        observer = Recorder(await opened(web.url, keys["live"], [TRADES]))
        seen = await dropped_and_resumed(web.url, keys["live"], by=by, away=observer)
        resumed, last = seen["resumed"], seen["last"]
        await observer.until(
            lambda r: last_seq(r, TRADES) >= last_seq(resumed, TRADES), 15, "the observer"
        )
        await observer.ws.close()
        await observer.stop()

    after = resumed.of(TRADES)
    assert all(f["type"] == "update" for f in after), [f["type"] for f in after]
    assert after[0].get("from_seq", after[0]["seq"]) == last + 1
    assert seq_gaps(after, after=last) == []  # contiguous: no gap, and nothing twice
    assert not any(f["type"] in ("lagged", "error") for f in resumed.frames)

    # The same trades, in the same order, as a client that never left.
    before = trade_ids(seen["before"])
    got = trade_ids(after)
    assert not set(before) & set(got)
    watched = trade_ids(observer.of(TRADES))
    start = watched.index(before[-1]) + 1
    assert got == watched[start : start + len(got)]
    assert len(got) >= 5


async def test_a_delayed_plan_resumes_without_a_gap_and_stays_delayed(keys, tmp_path):
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        live = Recorder(await opened(web.url, keys["live"], [TRADES]))
        seen = await dropped_and_resumed(web.url, keys["delayed"], by="resume", away=live)
        await live.ws.close()
        await live.stop()

    resumed, last = seen["resumed"], seen["last"]
    after = resumed.of(TRADES)
    assert after[0].get("from_seq", after[0]["seq"]) == last + 1
    assert seq_gaps(after, after=last) == []
    assert not any(f["type"] in ("lagged", "error") for f in resumed.frames)
    # Nothing reaches the delayed plan early, the resumed backlog included.
    for frame in [*seen["before"], *after]:
        assert frame["_wall_ms"] - max(r["recv_ts"] for r in frame["data"]) >= 1990
    # And it is the same tape, message for message, as real time.
    by_seq = singles(live.of(TRADES))
    common = set(by_seq) & set(singles(after))
    assert len(common) >= 5
    assert all(by_seq[s] == singles(after)[s] for s in common)


async def test_resume_past_the_window_says_resume_unavailable_and_sends_a_book_snapshot(
    keys, tmp_path
):
    client = aioredis.from_url(settings.REDIS_URL)
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        first = Recorder(await opened(web.url, keys["live"], [TRADES, BOOK]))
        await first.until(
            lambda r: len(r.of(TRADES)) >= 2 and len(r.of(BOOK)) >= 2, 30, "trades and books"
        )
        await first.ws.close()
        await first.stop()
        held = {TRADES: last_seq(first, TRADES), BOOK: last_seq(first, BOOK)}

        # Time passes and the store keeps only its newest messages (as after the window).
        async def newest(channel: str) -> int:
            rows = await client.xrevrange(replay_key(channel), count=1)
            return int(rows[0][1][b"seq"]) if rows else 0

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all([await newest(c) >= seq + 4 for c, seq in held.items()]):
                break
            await asyncio.sleep(0.2)
        for channel in held:
            await client.xtrim(replay_key(channel), maxlen=2, approximate=False)

        again = Recorder(await opened(web.url, keys["live"]))
        await again.ws.send(json.dumps({"op": "resume", "channels": held}))
        await again.until(
            lambda r: len(r.of(TRADES)) >= 2 and len(r.of(BOOK)) >= 2, 30, "data after resume"
        )
        await again.ws.close()
        await again.stop()
    await client.aclose()

    frames = again.frames
    errors = {f["details"]["channel"]: f for f in frames if f["type"] == "error"}
    assert set(errors) == {TRADES, BOOK}, errors
    for channel, error in errors.items():
        assert error["code"] == "resume_unavailable"
        assert error["details"]["oldest_seq"] > held[channel] + 1
    # The book starts again from a fresh snapshot, right after the notice, then goes on.
    book = [f for f in frames if f.get("channel") == BOOK or f is errors[BOOK]]
    assert book[0] is errors[BOOK]
    assert book[1]["type"] == "snapshot" and book[1]["seq"] > held[BOOK]
    assert seq_gaps(book[1:]) == []
    # Trades (no state to snapshot) go on live, newer than anything missed, without gaps.
    trades = again.of(TRADES)
    assert trades[0].get("from_seq", trades[0]["seq"]) > held[TRADES] + 1
    assert seq_gaps(trades) == []


async def test_replay_of_a_stored_range_equals_the_rest_history_of_that_range(keys, tmp_path):
    import httpx
    from asgiref.sync import sync_to_async

    from marketdata.models import Trade

    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        start = int(time.time() * 1000) + 1000
        end = start + 8000

        def stored_past_end() -> bool:
            """The writer has flushed every trade of the range (it stores in time order)."""
            if time.time() * 1000 < end + 2000:
                return False
            return Trade.objects.filter(
                instrument__exchange_id="sim",
                instrument__symbol="BTC-USD",
                ts__gt=datetime.fromtimestamp(end / 1000, tz=UTC),
            ).exists()

        deadline = time.monotonic() + 40
        while not await sync_to_async(stored_past_end)():
            assert time.monotonic() < deadline, "no trades stored past the range"
            await asyncio.sleep(0.25)

        ws = await opened(web.url, keys["live"])
        replays = {}
        for speed in (0, 4):  # as fast as possible, then at four times real time
            await ws.send(
                json.dumps(
                    {"op": "replay", "channel": TRADES, "from": start, "to": end, "speed": speed}
                )
            )
            began = time.monotonic()
            frames = []
            while not frames or frames[-1]["type"] != "replay_end":
                frame = await next_frame(ws)
                assert frame["type"] in ("replay", "replay_end", "heartbeat"), frame
                if frame["type"] != "heartbeat":
                    frames.append(frame)
            replays[speed] = (frames, time.monotonic() - began)
        # What is not stored cannot be replayed; delayed plans get no replay.
        await ws.send(json.dumps({"op": "replay", "channel": BOOK, "from": start, "to": end}))
        invalid = await expect(ws, "error")
        await ws.close()
        delayed = await opened(web.url, keys["delayed"])
        replay = {"op": "replay", "channel": TRADES, "from": start, "to": end}
        await delayed.send(json.dumps(replay))
        refused = await expect(delayed, "error")
        await delayed.close()

        rest, pages = [], 0
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {keys['live']}"}, timeout=20
        ) as http:
            url = f"{web.http}/api/v1/markets/sim/BTC-USD/trades"
            params = {"start": start, "end": end, "limit": 3}
            while url:
                response = await http.get(url, params=params)
                assert response.status_code == 200, response.text
                body = response.json()
                rest += body["data"]
                url, params, pages = body["next"], None, pages + 1

    assert pages >= 3 and len(rest) >= 8  # paged through `next`
    assert invalid["code"] == "invalid" and invalid["details"]["field"] == "channel"
    assert refused["code"] == "plan_required"
    for speed, (frames, took) in replays.items():
        records = [r for f in frames[:-1] for r in f["data"]]
        assert all(f["channel"] == TRADES for f in frames)
        assert records == rest, speed
        end_frame = frames[-1]
        assert (end_frame["from"], end_frame["to"], end_frame["count"]) == (start, end, len(rest))
        if speed:  # paced: the range's span at `speed` times real time, at least
            assert took >= (rest[-1]["ts"] - start) / 1000 / speed * 0.9, took


async def test_conflation_at_1000_ms_sends_at_most_a_frame_a_second_with_the_latest_state(
    keys, tmp_path
):
    from marketdata.feeds.publish import Publisher

    def book(i: int) -> dict:
        return {"bids": [[60000.0 - i, 1.0]], "asks": [[60001.0 + i, 2.0]], "ts": i}

    with running(WebProcess(logs=tmp_path)) as (web,):
        conflated_ws = await opened(web.url, keys["live"])
        echo = await subscribe(conflated_ws, [BOOK, TRADES], conflate_ms=1000)
        assert echo["conflate_ms"] == 1000
        conflated = Recorder(conflated_ws)
        every = Recorder(await opened(web.url, keys["live"], [BOOK, TRADES]))

        # 25 books and 25 trade messages a second for six seconds.
        publisher = Publisher(window_seconds=0)
        began = time.monotonic()
        for i in range(1, 151):
            await publisher.publish("book", "sim", "BTC/USD", book(i))
            trade = {"id": str(i), "ts": i, "price": 60000.0, "size": 0.1, "side": "buy"}
            await publisher.publish("trades", "sim", "BTC/USD", [trade])
            await asyncio.sleep(0.04)
        await publisher.flush()
        published = time.monotonic() - began
        await publisher.store.aclose()
        newest = {channel: publisher.seq[channel] for channel in (BOOK, TRADES)}
        for recorder in (conflated, every):
            for channel, seq in newest.items():
                await recorder.until(lambda r, c=channel, s=seq: last_seq(r, c) >= s, 20, channel)
            await recorder.ws.close()
            await recorder.stop()

    for channel in (BOOK, TRADES):
        frames = conflated.of(channel)
        # At most one update a second: the first goes at once, the last within a second
        # after publishing ended, a book's snapshot is not an update, and a loaded machine
        # may stretch publishing's own timing by a frame. Every message accounted for:
        # each frame starts right after the previous one.
        updates = [f for f in frames if f["type"] == "update"]
        assert len(updates) <= published + 3, [f["seq"] for f in frames]
        assert len(every.of(channel)) > 3 * len(frames)
        assert seq_gaps(frames) == []
        gaps = sorted(b["_at"] - a["_at"] for a, b in itertools.pairwise(frames))
        assert gaps[len(gaps) // 2] >= 0.8, gaps
    # Books: after each frame the client holds the book of that frame's newest message,
    # the same book as a client that got every message, and in the end the last one.
    held = {name: ClientBook.follow(r.of(BOOK)) for name, r in (("c", conflated), ("e", every))}
    common = set(held["c"]) & set(held["e"])
    assert newest[BOOK] in common
    assert all(held["c"][seq] == held["e"][seq] for seq in common)
    assert held["c"][newest[BOOK]] == ({59850.0: 1.0}, {60151.0: 2.0})
    # Trades: every trade, in order, batched.
    assert trade_ids(conflated.of(TRADES)) == [str(i) for i in range(1, 151)]


def acked(recorder: Recorder, channel: str) -> int | None:
    """Where the `unsubscribed` frame for `channel` is in what the client read."""
    for i, frame in enumerate(recorder.frames):
        if frame["type"] == "unsubscribed" and frame["channels"] == [channel]:
            return i
    return None


async def test_unsubscribe_stops_a_channel_and_an_idle_connection_gets_heartbeats(keys, tmp_path):
    with running(WebProcess(logs=tmp_path), FeedProcess(logs=tmp_path)) as (web, _):
        client = Recorder(await opened(web.url, keys["live"], [TRADES, BOOK]))
        await client.until(
            lambda r: len(r.of(TRADES)) >= 2 and len(r.of(BOOK)) >= 2, 30, "trades and books"
        )
        await client.ws.send(json.dumps({"op": "unsubscribe", "channels": [BOOK]}))
        await client.until(lambda r: acked(r, BOOK) is not None, 10, "the ack")
        book_ack = acked(client, BOOK)
        trades_then = len(client.of(TRADES))
        # Books come once a second: four seconds without one, while trades go on.
        await asyncio.sleep(4)
        await client.until(lambda r: len(r.of(TRADES)) >= trades_then + 3, 20, "more trades")

        await client.ws.send(json.dumps({"op": "unsubscribe", "channels": [TRADES]}))
        await client.until(lambda r: acked(r, TRADES) is not None, 10, "the ack")
        trades_ack = acked(client, TRADES)
        # Nothing is subscribed: only heartbeats (every 15 s of silence) from now on.
        await client.until(lambda r: r.frames[-1]["type"] == "heartbeat", 30, "a heartbeat")
        await client.ws.close()
        await client.stop()

    frames = client.frames
    assert not [f for f in frames[book_ack:] if f.get("channel") == BOOK]
    assert not [f for f in frames[trades_ack:] if f.get("channel") == TRADES]
    heartbeats = frames[trades_ack + 1 :]
    assert heartbeats and all(f["type"] == "heartbeat" for f in heartbeats)
    assert abs(heartbeats[0]["ts"] - heartbeats[0]["_wall_ms"]) < 5000
    assert heartbeats[0]["_at"] - frames[trades_ack]["_at"] >= 10  # after silence, not spam


async def test_two_web_processes_share_the_quota_and_the_seq_and_the_delayed_stream(keys, tmp_path):
    a, b = WebProcess(logs=tmp_path), WebProcess(logs=tmp_path)
    with running(a, b, FeedProcess(logs=tmp_path)):
        # One connection for the solo plan, across both processes.
        solo = await opened(a.url, keys["solo"])
        refused = await connect(b.url, key=keys["solo"])
        error = await expect(refused, "error")
        assert error["code"] == "quota_exceeded" and error["details"]["limit"] == 1
        assert await close_code(refused) == 4008
        await solo.close()
        # Its slot is given back as the socket ends: the other process welcomes it then
        # (a client reconnecting in the same instant may be refused once and retries).
        deadline = time.monotonic() + 10
        while True:
            again = await connect(b.url, key=keys["solo"])
            frame = await next_frame(again)
            await again.close()
            if frame["type"] == "welcome" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert frame["type"] == "welcome", frame

        on_a = Recorder(await opened(a.url, keys["live"], [TRADES]))
        on_b = Recorder(await opened(b.url, keys["live"], [TRADES]))
        delayed_b = Recorder(await opened(b.url, keys["delayed"], [TRADES, STATUS]))
        await delayed_b.until(lambda r: len(r.of(TRADES)) >= 10, 40, "delayed trades")
        newest = last_seq(delayed_b, TRADES)
        for recorder in (on_a, on_b):
            await recorder.until(lambda r: last_seq(r, TRADES) >= newest, 10, "live trades")
        for recorder in (on_a, on_b, delayed_b):
            await recorder.ws.close()
            await recorder.stop()

    frames = {name: r.of(TRADES) for name, r in (("a", on_a), ("b", on_b), ("d", delayed_b))}
    for name, got in frames.items():
        assert seq_gaps(got) == [], name
    # The same message has the same seq on both processes, on time and delayed.
    by_seq = {name: singles(got) for name, got in frames.items()}
    for other in ("b", "d"):
        common = set(by_seq["a"]) & set(by_seq[other])
        assert len(common) >= 5, other
        assert all(by_seq["a"][s] == by_seq[other][s] for s in common), other
    # The delayed copy is at least its delay late, measured from when the feed heard it.
    for frame in frames["d"]:
        assert frame["_wall_ms"] - max(r["recv_ts"] for r in frame["data"]) >= 1990
    # Feed status is not market data: the delayed plan hears it as it happens.
    reports = [f for f in delayed_b.of(STATUS) if f["type"] == "update"]
    assert reports, [f["type"] for f in delayed_b.of(STATUS)]
    ages = sorted(f["_wall_ms"] - f["data"]["ts"] for f in reports)
    assert ages[len(ages) // 2] < 1500, ages
