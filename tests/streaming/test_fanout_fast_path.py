"""The fan-out's fast path: shared wire frames, merged frames, and the publisher's Nagle."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from marketdata.feeds.publish import Publisher
from marketdata.streaming import frames
from marketdata.streaming.events import Event, event_after, events_merge
from marketdata.streaming.store import store_for_settings

TRADES = "trades.sim.BTC-USD"


def parse_frame(wire: bytes) -> Frame:
    """Read `wire` with the websockets client's own parser, as a client would."""
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert not reader.buffer, "bytes left over after the frame"
        return done.value
    raise AssertionError("the client would wait for more bytes")


@pytest.mark.parametrize("records", [0, 1, 2, 700, 1200])
def test_the_shared_wire_frame_is_one_whole_text_message_a_client_reads_back(records):
    # 0..2 records fit the 7-bit length, 700 the 16-bit one, 1200 (over 64 KiB) the 64-bit one.
    data = [
        {"id": str(i), "ts": i, "price": 1.5, "size": 0.1, "side": "buy"} for i in range(records)
    ]
    event = Event.of(channel=TRADES, seq=41, data=data, ts=0)
    frame = parse_frame(event.update_wire)
    assert frame.opcode is Opcode.TEXT and frame.fin and not (frame.rsv1 or frame.rsv2)
    assert frame.data.decode() == event.update_frame
    assert orjson.loads(frame.data) == {
        "type": "update",
        "channel": TRADES,
        "seq": 41,
        "data": data,
    }
    snapshot = parse_frame(event.snapshot_wire)
    assert orjson.loads(snapshot.data)["type"] == "snapshot"


def test_a_control_frame_on_the_wire_is_the_same_json():
    text = frames.pong(ping_id=7)
    assert parse_frame(frames.wire(text.encode())).data.decode() == text


def trade(i: int) -> dict:
    return {"id": str(i), "ts": int(time.time() * 1000), "price": 1.0, "size": 1.0, "side": "buy"}


def test_merged_messages_say_which_seqs_they_carry_and_keep_every_record():
    events = [Event.of(channel=TRADES, seq=s, data=[trade(s)], ts=s) for s in (5, 6, 7)]
    merged = events_merge(events)
    body = orjson.loads(merged.update_frame)
    assert (body["from_seq"], body["seq"]) == (5, 7)
    assert [t["id"] for t in body["data"]] == ["5", "6", "7"]
    assert "from_seq" not in orjson.loads(events[0].update_frame)
    # What a resume already sent is cut off a merged frame, record for record.
    rest = event_after(merged, 5)
    assert (rest.from_seq, rest.seq, [t["id"] for t in rest.data]) == (6, 7, ["6", "7"])
    assert event_after(merged, 7) is None


def test_merged_book_frames_carry_the_latest_state():
    ticker = "ticker.sim.BTC-USD"
    events = [Event.of(channel=ticker, seq=s, data={"last": s}, ts=s) for s in (1, 2)]
    assert events_merge(events).data == {"last": 2}


def test_merged_book_deltas_are_the_union_of_their_levels_the_later_winning():
    book = "book.sim.BTC-USD"
    deltas = [
        {"bids": [[2, 1], [1, 0]], "asks": [[3, 1]], "checksum": 11, "ts": 1},
        {"bids": [[2, 0], [1.5, 4]], "asks": [], "checksum": 22, "ts": 2},
    ]
    events = [Event.of(channel=book, seq=s, data=d, ts=s) for s, d in enumerate(deltas, 1)]
    merged = events_merge(events)
    assert merged.data == {
        "bids": [[2, 0], [1.5, 4], [1, 0]],
        "asks": [[3, 1]],
        "checksum": 22,
        "ts": 2,
    }
    assert (merged.from_seq, merged.seq) == (1, 2)


async def stored_after(store, cursor: str) -> tuple[str, list]:
    reader = store.reader()
    try:
        found = await asyncio.wait_for(reader.read({TRADES: cursor}), 5)
    finally:
        await reader.aclose()
    messages = found[0][1] if found else []
    return (messages[-1].id if messages else cursor), messages


async def test_a_record_goes_at_once_and_records_arriving_meanwhile_share_the_next_message():
    store = store_for_settings()
    publisher = Publisher(store=store)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await publisher.publish("trades", "sim", "BTC/USD", [trade(1)])
        cursor, first = await stored_after(store, "0-0")
        assert [t["id"] for m in first for t in orjson.loads(m.data)] == ["1"]
        assert loop.time() - started < 0.25  # no batching window

        for i in range(2, 6):  # a burst in one loop turn: one message
            await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        await asyncio.sleep(0.2)
        _, second = await stored_after(store, cursor)
        assert [[t["id"] for t in orjson.loads(m.data)] for m in second] == [["2", "3", "4", "5"]]
        assert second[0].seq == first[-1].seq + 1 and second[0].records == 4
    finally:
        await store.aclose()


async def test_a_restarted_publisher_continues_the_numbering():
    store = store_for_settings()
    try:
        first = Publisher(store=store)
        await first.publish("trades", "sim", "BTC/USD", [trade(1)])
        await first.flush()
        await asyncio.sleep(0.1)
        again = Publisher(store=store)  # a new feed process
        await again.publish("trades", "sim", "BTC/USD", [trade(2)])
        await asyncio.sleep(0.1)
        _, messages = await stored_after(store, "0-0")
        assert [m.seq for m in messages] == [1, 2]
    finally:
        await store.aclose()
